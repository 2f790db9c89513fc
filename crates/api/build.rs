//! Generates the Rust types, server and client for the GoBGP-compatible API subset in `proto/`.
//! The google.protobuf well-known types are mapped to `prost_types` by prost-build itself;
//! `protoc` resolves their imports from Debian's libprotobuf-dev (/usr/include).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/gobgp.proto",
        "proto/attribute.proto",
        "proto/capability.proto",
    ];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["proto", "/usr/include"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
