//! `seam apply/get/delete`: calicoctl's resource commands over Seam's datastore. Both Calico
//! YAML styles (v1 as in the seed, v3) apply; output is v3.

use std::io::Read;

use anyhow::Context;
use resources::{ApplyOutcome, Kind, Resource};

/// `seam apply -f FILE|-`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    /// YAML/JSON file with one or more resources (`---` documents, a list, or a v3 List); `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    #[command(flatten)]
    pub datastore: super::DatastoreArgs,
}

/// Output formats of `seam get`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Output {
    Yaml,
    Json,
}

/// `seam get KIND [NAME] [-o yaml|json]`.
#[derive(clap::Args)]
pub struct GetArgs {
    /// ippool, bgppeer, bgpconfig, node, wep, networkpolicy, gnp, profile (plural and case-insensitive forms too).
    pub kind: String,
    /// One resource; all of the kind when absent.
    pub name: Option<String>,
    /// Namespace of namespaced kinds (workloadendpoint, networkpolicy); all namespaces when listing without it.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// YAML or JSON (v3 style) instead of a table.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Output>,
    #[command(flatten)]
    pub datastore: super::DatastoreArgs,
}

/// `seam delete KIND NAME [-n NAMESPACE]`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    pub kind: String,
    pub name: String,
    /// Namespace of namespaced kinds (`default` when absent).
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub datastore: super::DatastoreArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn parse_kind(text: &str) -> anyhow::Result<Kind> {
    Kind::from_cli(text).with_context(|| {
        format!(
            "unknown resource kind {text:?}; expected one of ippool, bgppeer, bgpconfiguration, node, workloadendpoint (wep), networkpolicy, globalnetworkpolicy (gnp), profile"
        )
    })
}

async fn open(args: &super::DatastoreArgs) -> anyhow::Result<std::sync::Arc<dyn store::Store>> {
    store::open(&args.datastore).await.with_context(|| format!("cannot open datastore {}", args.datastore))
}

pub fn run_apply(args: ApplyArgs) -> anyhow::Result<()> {
    let (text, source) = if args.file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read resources from stdin")?;
        (text, "<stdin>".to_string())
    } else {
        let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file))?;
        (text, args.file.clone())
    };
    // Everything is parsed and validated before the datastore is even opened.
    let docs = match k8s_network_policies(&text, &source)? {
        Some(docs) => docs,
        None => resources::parse_documents(&text, &source)?,
    };
    if docs.is_empty() {
        anyhow::bail!("{source}: no resources found");
    }
    runtime()?.block_on(async {
        let store = open(&args.datastore).await?;
        let summary = resources::apply(&*store, docs).await?;
        for (kind, namespace, name, outcome) in &summary.results {
            let what = match outcome {
                ApplyOutcome::Created => "created",
                ApplyOutcome::Replaced => "replaced",
                ApplyOutcome::Unchanged => "unchanged",
            };
            match namespace {
                Some(ns) => println!("{kind} {ns}/{name} {what}"),
                None => println!("{kind} {name} {what}"),
            }
        }
        println!("Successfully applied {} resource(s)", summary.results.len());
        Ok(())
    })
}

/// A file of Kubernetes `networking.k8s.io/v1` NetworkPolicies becomes the namespaced
/// policies Seam enforces, each stored as `knp.default.<name>` (Calico's naming, so
/// `seam delete networkpolicy knp.default.NAME -n NS` removes it). None: not such a file.
fn k8s_network_policies(text: &str, source: &str) -> anyhow::Result<Option<Vec<Resource>>> {
    if !text.contains("networking.k8s.io/") {
        return Ok(None);
    }
    let Ok(policies) = resources::parse_k8s_network_policies(text, source) else { return Ok(None) };
    if policies.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for p in &policies {
        let converted = agent::policy::convert_k8s_policy(p).with_context(|| format!("{source}: NetworkPolicy {}/{}", p.namespace, p.name))?;
        out.push(Resource::NetworkPolicy(converted));
    }
    Ok(Some(out))
}

pub fn run_get(args: GetArgs) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    runtime()?.block_on(async {
        let store = open(&args.datastore).await?;
        let found = resources::get(&*store, kind, args.namespace.as_deref(), args.name.as_deref()).await?;
        let list_kind = if args.name.is_some() { None } else { Some(kind) };
        match args.output {
            Some(Output::Yaml) => print!("{}", resources::to_yaml(&found, list_kind)?),
            Some(Output::Json) => println!("{}", resources::to_json(&found, list_kind)),
            None => print!("{}", table(kind, &found)),
        }
        Ok(())
    })
}

pub fn run_delete(args: DeleteArgs) -> anyhow::Result<()> {
    let kind = parse_kind(&args.kind)?;
    runtime()?.block_on(async {
        let store = open(&args.datastore).await?;
        let deleted = resources::delete(&*store, kind, args.namespace.as_deref(), &args.name).await?;
        match deleted.namespace() {
            Some(ns) => println!("{kind} {ns}/{} deleted", deleted.name()),
            None => println!("{kind} {} deleted", deleted.name()),
        }
        if kind == Kind::Node {
            // A deleted node's blocks must go back to the pools (or lose their affinity).
            let released = ipam::release_node(&*store, &args.name).await.with_context(|| {
                format!("node {} was deleted but releasing its IPAM blocks failed; `seam` IPAM checks will report them", args.name)
            })?;
            println!(
                "Released {} empty block(s), {} block(s) still in use lost their affinity",
                released.blocks_released.len(),
                released.blocks_orphaned.len()
            );
        }
        Ok(())
    })
}

/// calicoctl-like table: a header and one aligned row per resource.
fn table(kind: Kind, found: &[Resource]) -> String {
    let header: &[&str] = match kind {
        Kind::IPPool => &["NAME", "CIDR", "SELECTOR"],
        Kind::BGPPeer => &["NAME", "PEERIP", "NODE", "ASN"],
        Kind::BGPConfiguration => &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
        Kind::Node => &["NAME", "ASN", "IPV4", "IPV6"],
        Kind::WorkloadEndpoint => &["NAMESPACE", "NAME", "NODE", "NETWORKS", "INTERFACE"],
        Kind::NetworkPolicy => &["NAMESPACE", "NAME"],
        Kind::GlobalNetworkPolicy | Kind::Profile => &["NAME"],
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in found {
        rows.push(match r {
            Resource::IPPool(p) => vec![p.name.clone(), p.spec.cidr.to_string(), p.spec.node_selector.clone()],
            Resource::BGPPeer(p) => vec![
                p.name.clone(),
                opt(p.spec.peer_ip.map(|ip| ip.to_string()).or_else(|| p.spec.peer_selector.clone())),
                p.spec.node.clone().or_else(|| p.spec.node_selector.clone()).unwrap_or_else(|| "(global)".into()),
                opt(p.spec.as_number.map(|a| a.to_string())),
            ],
            Resource::BGPConfiguration(c) => vec![
                c.name.clone(),
                opt(c.spec.log_severity_screen.clone()),
                c.spec.node_to_node_mesh_enabled.to_string(),
                opt(c.spec.as_number.map(|a| a.to_string())),
            ],
            Resource::Node(n) => {
                let bgp = n.spec.bgp.as_ref();
                vec![
                    n.name.clone(),
                    opt(bgp.and_then(|b| b.as_number).map(|a| a.to_string())),
                    opt(bgp.and_then(|b| b.ipv4_address).map(|a| a.to_string())),
                    opt(bgp.and_then(|b| b.ipv6_address).map(|a| a.to_string())),
                ]
            }
            Resource::WorkloadEndpoint(w) => vec![
                w.namespace.clone(),
                w.name.clone(),
                w.spec.node.clone(),
                w.spec.ip_networks.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
                w.spec.interface_name.clone(),
            ],
            Resource::NetworkPolicy(p) => vec![p.namespace.clone(), p.name.clone()],
            Resource::GlobalNetworkPolicy(p) => vec![p.name.clone()],
            Resource::Profile(p) => vec![p.name.clone()],
        });
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}
