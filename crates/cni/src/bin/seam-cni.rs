//! The `seam-cni` executable: reads the CNI environment and stdin, runs [`cni::plugin::run`],
//! prints its output and exits with its code. No async runtime: it starts in about 1 ms.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    // A read failure leaves stdin empty; the plugin then reports the decode error on stdout.
    let read_error = std::io::stdin().read_to_end(&mut stdin).err();
    let outcome = match read_error {
        Some(e) => cni::plugin::stdin_failure(&e),
        None => cni::plugin::run(|k| std::env::var(k).ok(), &stdin),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}
