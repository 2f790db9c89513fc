//! The agent's side of CNI: every `seam-cni` invocation arrives here as one
//! [`cni::protocol::Request`] on the agent's Unix socket, and [`WorkloadManager::handle`] does
//! the real work — an address from this node's affine block (IPAM), a veth pair into the
//! workload's netns with a link-local gateway answered by proxy-ARP (as Calico does), the host
//! route to the workload, and the WorkloadEndpoint record — and answers with a CNI result or a
//! CNI error naming what failed.
//!
//! Error codes (besides the spec's): 100 IPAM could not give an address (no pool selects the
//! node, pools exhausted, node not registered), 101 kernel plumbing failed, 102 datastore
//! failed, 103 CHECK found the workload not as ADD left it. A datastore that is momentarily
//! unreachable or contended is 11, "try again later".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cni::protocol::{self, Command, Request, Response};
use cni::spec::{codes, Attachment, CniError, CniResult, Dns, Interface, IpConfig, Route as CniRoute};
use dataplane::{MacAddr, NetNs, Netlink, Route, VethSpec, SEAM_ROUTE_PROTOCOL};
use ipam::{AllocationRequest, Handle, Ipam, IpamError};
use ipnet::IpNet;
use resources::{Kind, Resource, ResourceError, WorkloadEndpoint, WorkloadEndpointSpec};
use serde_json::Value;
use store::{Store, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The workload's IPv4 gateway: a link-local address nobody owns; the host side of the veth
/// answers ARP for it (proxy-ARP), so every workload has the same, never-conflicting gateway.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// MAC of every host-side veth (as Calico does): the workload only ever talks to its gateway,
/// so a fixed, locally administered address is enough and keeps ARP caches stable.
pub const HOST_VETH_MAC: MacAddr = MacAddr([0xee, 0xee, 0xee, 0xee, 0xee, 0xee]);

/// Prefix of host-side veth names (`seam` + 11 hex digits, like Calico's `cali…`).
pub const HOST_VETH_PREFIX: &str = "seam";

/// Label keys the agent adds to every endpoint (Calico's names, so policies carry over).
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";

/// What the workload handler needs from the agent. Built by the agent at start-up.
pub struct WorkloadContext {
    /// This node's name (its Node resource and IPAM affinity).
    pub node: String,
    /// The orchestrator whose workloads this node runs, e.g. "kubernetes", "dcos", "podman".
    pub orchestrator: String,
    /// The datastore (WorkloadEndpoints).
    pub store: Arc<dyn Store>,
    /// IPAM over the same store.
    pub ipam: Ipam,
    /// Default MTU of workload interfaces (a network config's `mtu` overrides it).
    pub mtu: u32,
    /// Notified after an allocation that claimed a block new to this node or a release that
    /// emptied a block, so the agent re-reads its blocks and updates its BGP announcements.
    pub blocks_changed: Arc<tokio::sync::Notify>,
}

/// Serves CNI requests for one node. Cheap to share (`Arc`); requests for different
/// containers run concurrently, requests for the same attachment are serialised.
pub struct WorkloadManager {
    ctx: WorkloadContext,
    /// Netlink handle in the agent's (host) namespace, opened on first use inside the runtime.
    host: tokio::sync::OnceCell<Netlink>,
    /// Blocks this process has already seen allocations from; an address from any other block
    /// means the node (probably) claimed a new one, and the agent must announce it.
    known_blocks: Mutex<BTreeSet<IpNet>>,
    /// One lock per attachment (handle id), so an ADD and a DEL of the same container never
    /// interleave. Idle entries are pruned once the map grows.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Deletes the veths of answered DELs in batches.
    reaper: Arc<Reaper>,
    /// Network policy: an ADD answers only once the endpoint's policy is loaded, a DEL
    /// removes it. None: no enforcement (tests of the plumbing alone).
    policy: Option<Arc<crate::policy::PolicySync>>,
}

/// The host-side veth name for an attachment: `seam` + the first 11 hex digits of a 64-bit
/// FNV-1a hash of `CONTAINER_ID.IFNAME`. Stable across restarts and versions (unlike std's
/// hasher), and 15 bytes, the kernel's limit.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain(std::iter::once(b'.')).chain(ifname.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{HOST_VETH_PREFIX}{}", &format!("{hash:016x}")[..11])
}

/// The workload end's MAC: locally administered, unicast, derived from the attachment like
/// the host veth's name, so the endpoint record can be written before the kernel answers.
pub fn workload_mac(container_id: &str, ifname: &str) -> MacAddr {
    let name = host_veth_name(container_id, ifname);
    let hex = &name[HOST_VETH_PREFIX.len()..];
    let byte = |i: usize| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits");
    MacAddr([0x0a, 0x58, byte(0), byte(1), byte(2), byte(3)])
}

/// A plumbed veth pair, as `create_pair` hands it to `configure`.
struct Pair {
    /// Netlink in the workload's netns.
    pod: Netlink,
    host_index: u32,
    pod_index: u32,
    /// The workload end's MAC (reported in the result).
    pod_mac: MacAddr,
}

/// True for names [`host_veth_name`] produces (GC deletes only these).
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == 15
        && name.starts_with(HOST_VETH_PREFIX)
        && name[HOST_VETH_PREFIX.len()..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Calico's short orchestrator ids, used only inside endpoint *names* (`k8s` for Kubernetes).
/// The `projectcalico.org/orchestrator` label and `spec.orchestrator` carry the agent's
/// `--orchestrator` as given, because that is the value the policy compiler matches selectors
/// against (`projectcalico.org/orchestrator == 'kubernetes'`).
fn orchestrator_short(orchestrator: &str) -> String {
    match orchestrator.to_ascii_lowercase().as_str() {
        "kubernetes" | "k8s" => "k8s".into(),
        other => other.into(),
    }
}

/// One part of an endpoint name: lowercase, `-` doubled (so the parts' boundaries stay
/// unambiguous, Calico's scheme), and anything a resource name may not hold turned into `.`.
fn name_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c.to_ascii_lowercase() {
            '-' => out.push_str("--"),
            c if c.is_ascii_lowercase() || c.is_ascii_digit() => out.push(c),
            _ => out.push('.'),
        }
    }
    out
}

/// The WorkloadEndpoint's name: `NODE-ORCH-WORKLOAD-IFNAME` (Calico's layout), shortened with a
/// hash when longer than a resource name may be.
pub fn endpoint_name(node: &str, orchestrator: &str, workload: &str, ifname: &str) -> String {
    let name = [node, &orchestrator_short(orchestrator), workload, ifname].map(name_part).join("-");
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if name.len() <= 253 {
        return name;
    }
    let hash = &host_veth_name(&name, "")[HOST_VETH_PREFIX.len()..];
    let head: String = name.chars().take(240).collect();
    format!("{}-{hash}", head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
}

/// The WorkloadEndpoint record for an attachment on `node` of `orchestrator` (the agent's
/// `--orchestrator`, stored as given in `spec.orchestrator` and the orchestrator label).
pub fn endpoint_record(
    node: &str,
    orchestrator: &str,
    req: &Request,
    identity: &WorkloadIdentity,
    host_name: &str,
    ips: &[IpAddr],
) -> WorkloadEndpoint {
    let is_k8s = orchestrator_short(orchestrator) == "k8s";
    WorkloadEndpoint {
        namespace: identity.namespace.clone(),
        name: endpoint_name(node, orchestrator, &identity.name, &req.ifname),
        labels: identity.labels.clone(),
        spec: WorkloadEndpointSpec {
            node: node.to_string(),
            orchestrator: orchestrator.to_string(),
            workload: if is_k8s { String::new() } else { identity.name.clone() },
            pod: if is_k8s { identity.name.clone() } else { String::new() },
            container_id: req.container_id.clone(),
            endpoint: req.ifname.clone(),
            interface_name: host_name.to_string(),
            mac: workload_mac(&req.container_id, &req.ifname).to_string(),
            ip_networks: ips.iter().map(|ip| host_prefix(*ip)).collect(),
            ..Default::default()
        },
    }
}

/// Who the workload is: its namespace, name and labels, from the CNI args and the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadIdentity {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

fn valid_label_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 316 && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

/// Namespace/name from `K8S_POD_NAMESPACE`/`K8S_POD_NAME` (Kubernetes; podman passes the
/// container name as `K8S_POD_NAME` too), else `default` and the container id's first 12
/// characters. Labels from the config's `args.cni.labels` (an invalid key is an error naming
/// it) and `args.podman_labels` (invalid keys are skipped: they are container metadata, not
/// network config), plus the orchestrator and namespace labels.
pub fn workload_identity(req: &Request, orchestrator: &str) -> Result<WorkloadIdentity, CniError> {
    let arg = |k: &str| req.args.get(k).filter(|v| !v.is_empty()).cloned();
    let namespace = arg("K8S_POD_NAMESPACE").unwrap_or_else(|| "default".to_string());
    let name = arg("K8S_POD_NAME").unwrap_or_else(|| req.container_id.chars().take(12).collect());
    let mut labels = BTreeMap::new();
    let string_map = |v: Option<&Value>, field: &str, strict: bool, labels: &mut BTreeMap<String, String>| {
        let Some(v) = v else { return Ok(()) };
        let Some(map) = v.as_object() else {
            return Err(CniError::new(codes::INVALID_NETWORK_CONFIG, format!("{field}: must be an object of strings")));
        };
        for (k, v) in map {
            let Some(v) = v.as_str() else {
                if strict {
                    return Err(CniError::new(codes::INVALID_NETWORK_CONFIG, format!("{field}.{k}: must be a string")));
                }
                continue;
            };
            if !valid_label_key(k) {
                if strict {
                    return Err(CniError::new(
                        codes::INVALID_NETWORK_CONFIG,
                        format!("{field}.{k}: not a valid label key (letters, digits, '-', '_', '.', '/')"),
                    ));
                }
                continue;
            }
            labels.insert(k.clone(), v.to_string());
        }
        Ok(())
    };
    let args = req.config.get("args");
    string_map(args.and_then(|a| a.get("podman_labels")), "args.podman_labels", false, &mut labels)?;
    string_map(args.and_then(|a| a.get("cni")).and_then(|c| c.get("labels")), "args.cni.labels", true, &mut labels)?;
    // The full name, as `spec.orchestrator` and the policy compiler have it (not the short id).
    labels.insert(LABEL_ORCHESTRATOR.to_string(), orchestrator.to_string());
    labels.insert(LABEL_NAMESPACE.to_string(), namespace.clone());
    Ok(WorkloadIdentity { namespace, name, labels })
}

fn store_error(what: &str, e: &StoreError) -> CniError {
    let code = match e {
        StoreError::Backend { .. } | StoreError::Conflict { .. } => codes::TRY_AGAIN_LATER,
        _ => codes::SEAM_DATASTORE,
    };
    CniError::new(code, format!("datastore: {what}")).with_details(e.to_string())
}

fn ipam_error(what: &str, e: IpamError) -> CniError {
    match e {
        IpamError::Store(s) => store_error(what, &s),
        IpamError::Contention { .. } => {
            CniError::new(codes::TRY_AGAIN_LATER, format!("IPAM: {what}")).with_details(e.to_string())
        }
        IpamError::InvalidHandle { .. } => {
            CniError::new(codes::INVALID_ENV, format!("CNI_CONTAINERID/CNI_IFNAME: {e}"))
        }
        other => CniError::new(codes::SEAM_IPAM, format!("IPAM: {what}: {other}")),
    }
}

fn resource_error(what: &str, e: ResourceError) -> CniError {
    match e {
        ResourceError::Store(s) => store_error(what, &s),
        other => CniError::new(codes::SEAM_DATASTORE, format!("datastore: {what}")).with_details(other.to_string()),
    }
}

fn dataplane_error(what: impl Into<String>, e: dataplane::Error) -> CniError {
    CniError::new(codes::SEAM_DATAPLANE, what.into()).with_details(e.to_string())
}

fn check_failed(msg: impl Into<String>) -> CniError {
    CniError::new(codes::SEAM_CHECK_FAILED, msg)
}

fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("full-length prefix is valid")
}

fn default_v4() -> IpNet {
    IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("0.0.0.0/0")
}

/// Holds one attachment's lock for the duration of a request (or of a DEL's background
/// link deletion, which takes the guard along).
type LockGuard = tokio::sync::OwnedMutexGuard<()>;

/// Lock entries kept before idle ones (held by nobody) are pruned from the map.
const LOCK_MAP_PRUNE_AT: usize = 256;

/// The link group (`IFLA_GROUP`) doomed workload veths are moved into, so that one
/// `ip link delete group` unregisters a whole batch: the kernel then waits for its RCU grace
/// periods (~20 ms on the lab VM, holding RTNL, which stalls every ADD meanwhile) once per
/// batch instead of once per workload. Only Seam puts links in this group.
pub const REAP_GROUP: u32 = 0x5ea1;

/// How long DELs are gathered before their veths are deleted in one batch.
const REAP_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// Host veths whose DEL has already answered, waiting to be deleted in one batch, each with
/// its attachment's lock (released once the link is gone, so an ADD of the same attachment
/// waits for it).
#[derive(Default)]
struct Reaper {
    pending: Mutex<Vec<(String, LockGuard)>>,
    wake: tokio::sync::Notify,
    /// Set once the reaper task has been spawned (on the first DEL, inside the runtime).
    running: std::sync::atomic::AtomicBool,
    /// Held while a batch is being deleted, so [`WorkloadManager::reap_now`] can wait for it.
    busy: tokio::sync::Mutex<()>,
}

impl Reaper {
    /// Forever: wait for DELs, let more arrive for [`REAP_DELAY`], delete the batch.
    async fn run(self: Arc<Self>, host: Netlink) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(REAP_DELAY).await;
            let _busy = self.busy.lock().await;
            let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
            if batch.is_empty() {
                continue;
            }
            let names: Vec<&str> = batch.iter().map(|(n, _)| n.as_str()).collect();
            delete_veth_batch(&host, &names).await;
            drop(batch);
        }
    }
}

/// Deletes `names` with one `ip -force -batch -` (each moved into [`REAP_GROUP`], then the
/// group deleted: one unregister for all), then one by one through netlink whatever is still
/// there (iproute2 missing, a line that failed). Failures are logged; GC retries them.
async fn delete_veth_batch(host: &Netlink, names: &[&str]) {
    use tokio::io::AsyncWriteExt as _;
    let mut script = String::new();
    for name in names {
        script.push_str(&format!("link set dev {name} group {REAP_GROUP}\n"));
    }
    script.push_str(&format!("link delete group {REAP_GROUP}\n"));
    let spawned = tokio::process::Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match spawned {
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(script.as_bytes()).await;
            }
            match child.wait_with_output().await {
                Ok(out) if !out.status.success() => {
                    tracing::debug!(stderr = %String::from_utf8_lossy(&out.stderr).trim(), "ip -batch reported errors deleting workload veths");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "waiting for ip -batch failed"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot run ip to delete workload veths in a batch; deleting one by one"),
    }
    for name in names {
        if let Err(e) = host.delete_link(name).await {
            tracing::warn!(veth = %name, error = %e, "deleting a workload veth after DEL failed (GC will retry)");
        }
    }
}

impl WorkloadManager {
    pub fn new(ctx: WorkloadContext) -> Self {
        WorkloadManager {
            ctx,
            host: tokio::sync::OnceCell::new(),
            known_blocks: Mutex::new(BTreeSet::new()),
            locks: Mutex::new(HashMap::new()),
            reaper: Arc::new(Reaper::default()),
            policy: None,
        }
    }

    /// Enforces network policy on this manager's endpoints through `policy`.
    pub fn with_policy(mut self, policy: Arc<crate::policy::PolicySync>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Loads the new endpoint's policy (no-op without enforcement); an error fails the ADD,
    /// so no workload runs without its policy.
    async fn apply_policy(&self, wep: &WorkloadEndpoint) -> Result<(), CniError> {
        let Some(policy) = &self.policy else { return Ok(()) };
        policy.endpoint_added(wep).await.map(|_| ()).map_err(|e| {
            let code = match e {
                crate::policy::PolicySyncError::NotReady => codes::TRY_AGAIN_LATER,
                _ => codes::SEAM_DATAPLANE,
            };
            CniError::new(code, format!("network policy for {}/{}", wep.namespace, wep.name)).with_details(e.to_string())
        })
    }

    /// The context this manager was built with.
    pub fn context(&self) -> &WorkloadContext {
        &self.ctx
    }

    async fn host(&self) -> Result<&Netlink, CniError> {
        self.host
            .get_or_try_init(|| async { Netlink::connect() })
            .await
            .map_err(|e| dataplane_error("opening netlink in the agent's namespace", e))
    }

    async fn lock(&self, key: &str) -> LockGuard {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() >= LOCK_MAP_PRUNE_AT {
                // Only the map refers to an idle entry: nobody holds or waits for it.
                locks.retain(|_, m| Arc::strong_count(m) > 1);
            }
            locks.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Deletes the veths of answered DELs now instead of at the next batch (after waiting for
    /// a batch being deleted at this moment).
    async fn reap_now(&self, host: &Netlink) {
        let _busy = self.reaper.busy.lock().await;
        let batch = std::mem::take(&mut *self.reaper.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            let names: Vec<&str> = batch.iter().map(|(n, _)| n.as_str()).collect();
            delete_veth_batch(host, &names).await;
        }
    }

    /// Handles one request; never panics on bad input, always answers.
    pub async fn handle(&self, request: Request) -> Response {
        self.dispatch(request, None).await
    }

    /// `netns_via`: a path that reaches the same netns as `CNI_NETNS` from the agent's mount
    /// namespace (the plugin's open descriptor under /proc), tried first.
    async fn dispatch(&self, request: Request, netns_via: Option<String>) -> Response {
        let via = netns_via.as_deref();
        let result = match request.command {
            Command::Add => self.add(&request, via).await.map(Some),
            Command::Del => self.del(&request).await.map(|()| None),
            Command::Check => self.check(&request, via).await.map(|()| None),
            Command::Gc => self.gc(&request).await.map(|()| None),
            Command::Status => self.status().await.map(|()| None),
        };
        match result {
            Ok(r) => Response::ok(r),
            Err(e) => Response::Err(e),
        }
    }

    /// Listens on `socket` (a stale socket file is removed first; mode 0660) and serves one
    /// request per connection, each on its own task, until `shutdown` completes. The socket
    /// file is removed on the way out.
    pub async fn serve(self: Arc<Self>, socket: &Path, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let ctx = |what: &str, e: std::io::Error| std::io::Error::new(e.kind(), format!("{what} {}: {e}", socket.display()));
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ctx("creating the directory of", e))?;
        }
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx("removing stale socket", e)),
        }
        let listener = tokio::net::UnixListener::bind(socket).map_err(|e| ctx("binding", e))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)).map_err(|e| ctx("chmod 0660", e))?;
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let me = self.clone();
                        tokio::spawn(async move { me.serve_connection(stream).await });
                    }
                    Err(e) => {
                        // EMFILE and friends are transient: log and keep serving.
                        tracing::warn!(socket = %socket.display(), error = %e, "accepting a CNI connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
            }
        };
        let _ = std::fs::remove_file(socket);
        result
    }

    /// One connection: one request line in, one response line out.
    async fn serve_connection(&self, stream: tokio::net::UnixStream) {
        // The plugin's pid as the kernel reports it (SO_PEERCRED), never as the message says.
        let peer_pid = stream.peer_cred().ok().and_then(|c| c.pid()).filter(|p| *p > 0);
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read.take(protocol::MAX_LINE as u64));
        let mut line = Vec::new();
        let response = match reader.read_until(b'\n', &mut line).await {
            Ok(0) => return,
            Ok(_) => match protocol::decode_line::<Request>("request", &line) {
                Ok(req) => {
                    let started = std::time::Instant::now();
                    let (command, container, ifname) = (req.command, req.container_id.clone(), req.ifname.clone());
                    let via = match (peer_pid, req.netns_fd) {
                        (Some(pid), Some(fd)) if fd >= 0 => Some(format!("/proc/{pid}/fd/{fd}")),
                        _ => None,
                    };
                    let resp = self.dispatch(req, via).await;
                    match &resp {
                        Response::Ok { .. } => tracing::debug!(command = command.as_str(), %container, %ifname, took_us = started.elapsed().as_micros() as u64, "CNI request done"),
                        Response::Err(e) => tracing::info!(command = command.as_str(), %container, %ifname, error = %e, "CNI request failed"),
                    }
                    resp
                }
                Err(e) => Response::Err(e),
            },
            Err(e) => Response::Err(
                CniError::new(codes::IO_FAILURE, "reading the request from the plugin failed").with_details(e.to_string()),
            ),
        };
        let _ = write.write_all(&protocol::encode_line(&response)).await;
        let _ = write.shutdown().await;
    }

    /// Container id + ifname (+ netns when `need_netns`) validated into a handle.
    fn attachment(req: &Request, need_netns: bool) -> Result<Handle, CniError> {
        if req.container_id.is_empty() {
            return Err(CniError::new(codes::INVALID_ENV, format!("CNI_CONTAINERID is not set (required for {})", req.command.as_str())));
        }
        if req.ifname.is_empty() {
            return Err(CniError::new(codes::INVALID_ENV, format!("CNI_IFNAME is not set (required for {})", req.command.as_str())));
        }
        if !cni::spec::valid_ifname(&req.ifname) {
            return Err(CniError::new(codes::INVALID_ENV, format!("CNI_IFNAME: {:?} is not a valid interface name", req.ifname)));
        }
        if need_netns && req.netns.is_empty() {
            return Err(CniError::new(codes::INVALID_ENV, format!("CNI_NETNS is not set (required for {})", req.command.as_str())));
        }
        Handle::new(&req.container_id, &req.ifname).map_err(|e| ipam_error("handle", e))
    }

    /// Opens the workload's netns: through the plugin's descriptor when there is one (the
    /// runtime's mount namespace may hide the path from the agent), else by `CNI_NETNS`.
    fn open_netns(req: &Request, via: Option<&str>) -> Result<NetNs, CniError> {
        if let Some(ns) = via.and_then(|p| NetNs::open(p).ok()) {
            return Ok(ns);
        }
        NetNs::open(&req.netns).map_err(|e| {
            CniError::new(codes::INVALID_ENV, format!("CNI_NETNS: cannot open {}", req.netns)).with_details(e.to_string())
        })
    }

    fn mtu(&self, req: &Request) -> u32 {
        req.config.get("mtu").and_then(Value::as_u64).map(|m| m as u32).unwrap_or(self.ctx.mtu)
    }

    // ----- ADD ---------------------------------------------------------------------------
    //
    // The critical path is kept short by overlapping independent work: the IPAM allocation
    // (datastore round trips) runs while the veth pair is created, and the endpoint record is
    // written while addresses and routes are configured. The workload's MAC is derived from
    // the attachment, so the record does not have to wait for the kernel.

    async fn add(&self, req: &Request, via: Option<&str>) -> Result<Value, CniError> {
        let handle = Self::attachment(req, true)?;
        let identity = workload_identity(req, &self.ctx.orchestrator)?;
        let pod_ns = Self::open_netns(req, via)?;
        let host = self.host().await?.clone();
        let _lock = self.lock(&handle.id()).await;
        let host_name = host_veth_name(&req.container_id, &req.ifname);
        let mtu = self.mtu(req);

        let mut areq = AllocationRequest::new(&self.ctx.node, handle.clone());
        areq.attributes.insert(ipam::ATTR_NAMESPACE.into(), identity.namespace.clone());
        areq.attributes.insert(ipam::ATTR_POD.into(), identity.name.clone());
        areq.attributes.insert(ipam::ATTR_ORCHESTRATOR.into(), self.ctx.orchestrator.clone());
        let (allocation, pair) = tokio::join!(
            self.ctx.ipam.allocate(areq),
            self.create_pair(req, &host, &pod_ns, &host_name, mtu),
        );
        let allocation = match allocation {
            Ok(a) => a,
            Err(e) => {
                if pair.is_ok() {
                    let _ = host.delete_link(&host_name).await;
                }
                return Err(ipam_error(&format!("allocating an address for {handle} on node {}", self.ctx.node), e));
            }
        };
        let new_block = {
            let mut known = self.known_blocks.lock().unwrap_or_else(|p| p.into_inner());
            let mut new_block = false;
            for a in &allocation.ips {
                new_block |= known.insert(a.block);
            }
            new_block
        };
        if new_block {
            self.ctx.blocks_changed.notify_one();
        }
        let ips: Vec<IpAddr> = allocation.ips.iter().map(|a| a.ip).collect();

        let wep = self.endpoint(req, &identity, &host_name, &ips);
        let wep_key = (wep.namespace.clone(), wep.name.clone());
        let policy_wep = wep.clone();
        let outcome = match pair {
            Err(e) => Err(e),
            Ok(pair) => {
                let (routes, recorded) = tokio::join!(
                    self.configure(req, &host, &pair, &host_name, &ips),
                    resources::apply(&*self.ctx.store, vec![Resource::WorkloadEndpoint(wep)]),
                );
                match (routes, recorded) {
                    // The policy goes in before ADD answers: the runtime starts the workload
                    // only afterwards, so nothing reaches it unfiltered.
                    (Ok(routes), Ok(_)) => self.apply_policy(&policy_wep).await.map(|()| (pair, routes)),
                    (Err(e), _) => Err(e),
                    (_, Err(e)) => Err(resource_error("recording the WorkloadEndpoint", e)),
                }
            }
        };
        match outcome {
            Ok((pair, routes)) => {
                let result = CniResult {
                    interfaces: vec![
                        Interface { name: host_name.clone(), mac: HOST_VETH_MAC.to_string(), mtu: Some(mtu), sandbox: String::new() },
                        Interface { name: req.ifname.clone(), mac: pair.pod_mac.to_string(), mtu: Some(mtu), sandbox: req.netns.clone() },
                    ],
                    ips: ips
                        .iter()
                        .map(|ip| IpConfig {
                            address: host_prefix(*ip),
                            gateway: ip.is_ipv4().then_some(IpAddr::V4(GATEWAY_V4)),
                            interface: Some(1),
                        })
                        .collect(),
                    routes,
                    dns: Dns::default(),
                };
                Ok(serde_json::to_value(&result).expect("results serialize"))
            }
            Err(e) => {
                // Roll back so a failed ADD leaves nothing behind (the runtime may not DEL).
                let _ = host.delete_link(&host_name).await;
                if let Ok(Resource::WorkloadEndpoint(w)) =
                    resources::get(&*self.ctx.store, Kind::WorkloadEndpoint, Some(&wep_key.0), Some(&wep_key.1))
                        .await
                        .map(|mut v| v.remove(0))
                {
                    if w.spec.container_id == req.container_id {
                        let _ = self.delete_wep(&w).await;
                    }
                }
                if let Ok(freed) = self.ctx.ipam.release(&handle).await {
                    if !freed.is_empty() {
                        self.ctx.blocks_changed.notify_one();
                    }
                }
                Err(e)
            }
        }
    }

    /// The endpoint record for an attachment (what policy and `seam get wep` read).
    fn endpoint(&self, req: &Request, identity: &WorkloadIdentity, host_name: &str, ips: &[IpAddr]) -> WorkloadEndpoint {
        endpoint_record(&self.ctx.node, &self.ctx.orchestrator, req, identity, host_name, ips)
    }

    /// Creates the veth pair (or keeps a complete one from an earlier ADD), brings both ends
    /// up and turns on proxy-ARP and forwarding on the host side. Needs no address yet.
    async fn create_pair(&self, req: &Request, host: &Netlink, pod_ns: &NetNs, host_name: &str, mtu: u32) -> Result<Pair, CniError> {
        let ifname = req.ifname.as_str();
        let pod = Netlink::connect_in(pod_ns)
            .await
            .map_err(|e| dataplane_error(format!("opening netlink in {}", req.netns), e))?;
        // A repeated ADD keeps a pair that is already complete; anything half-made is redone.
        let (existing_host, mut existing_pod) = tokio::join!(host.link(host_name), pod.link(ifname));
        let existing_host = existing_host.map_err(|e| dataplane_error(format!("looking up {host_name}"), e))?;
        let lookup_pod_err = |e| dataplane_error(format!("looking up {ifname} in {}", req.netns), e);
        if existing_host.is_none() && existing_pod.as_ref().is_ok_and(|l| l.as_ref().is_some_and(|l| l.kind.as_deref() == Some("veth"))) {
            // Probably the workload end of an earlier attachment in this netns whose DEL has
            // answered but whose veth is still waiting for the batch deletion: delete the
            // pending batch now, then look again.
            self.reap_now(host).await;
            existing_pod = pod.link(ifname).await;
        }
        let existing_pod = existing_pod.map_err(lookup_pod_err)?;
        let complete = existing_host.is_some() && existing_pod.as_ref().is_some_and(|l| l.kind.as_deref() == Some("veth"));
        if !complete {
            if existing_pod.is_some() {
                return Err(CniError::new(
                    codes::SEAM_DATAPLANE,
                    format!("CNI_IFNAME: interface {ifname} already exists in {} and is not Seam's", req.netns),
                ));
            }
            if existing_host.is_some() {
                host.delete_link(host_name).await.map_err(|e| dataplane_error(format!("deleting stale {host_name}"), e))?;
            }
            let spec = VethSpec {
                name: host_name.to_string(),
                peer_name: ifname.to_string(),
                mtu: Some(mtu),
                mac: Some(HOST_VETH_MAC),
                peer_mac: Some(workload_mac(&req.container_id, ifname)),
            };
            host.create_veth(&spec, Some(pod_ns))
                .await
                .map_err(|e| dataplane_error(format!("creating veth {host_name} <-> {ifname} in {}", req.netns), e))?;
        }
        let (host_up, pod_up) = tokio::join!(host.set_up(host_name), pod.set_up(ifname));
        host_up.map_err(|e| dataplane_error(format!("setting {host_name} up"), e))?;
        pod_up.map_err(|e| dataplane_error(format!("setting {ifname} up in {}", req.netns), e))?;
        // Proxy-ARP so the host answers for the gateway even if the static entry is flushed.
        let (arp, delay, fwd) = tokio::join!(
            dataplane::sysctl::set_proxy_arp(None, host_name, true),
            dataplane::sysctl::set_proxy_delay(None, host_name, 0),
            dataplane::sysctl::set_ipv4_forwarding(None, true),
        );
        arp.map_err(|e| dataplane_error(format!("enabling proxy_arp on {host_name}"), e))?;
        delay.map_err(|e| dataplane_error(format!("setting proxy_delay on {host_name}"), e))?;
        fwd.map_err(|e| dataplane_error("enabling net.ipv4.ip_forward", e))?;
        let (host_index, pod_index) = tokio::join!(host.link_index(host_name), pod.link_index(ifname));
        let host_index = host_index.map_err(|e| dataplane_error(format!("looking up {host_name}"), e))?;
        let pod_index = pod_index.map_err(|e| dataplane_error(format!("looking up {ifname} in {}", req.netns), e))?;
        let pod_mac = match existing_pod.and_then(|l| l.mac) {
            Some(mac) if complete => mac,
            _ => workload_mac(&req.container_id, ifname),
        };
        Ok(Pair { pod, host_index, pod_index, pod_mac })
    }

    /// The workload's addresses, its gateway (on-link, with a permanent neighbour entry) and
    /// default route, and the host route to each address. Returns the routes for the result.
    async fn configure(&self, req: &Request, host: &Netlink, pair: &Pair, host_name: &str, ips: &[IpAddr]) -> Result<Vec<CniRoute>, CniError> {
        let ifname = req.ifname.as_str();
        let pod = &pair.pod;
        for ip in ips {
            pod.add_address(ifname, host_prefix(*ip))
                .await
                .map_err(|e| dataplane_error(format!("adding {ip} to {ifname} in {}", req.netns), e))?;
        }
        let mut routes = Vec::new();
        if ips.iter().any(IpAddr::is_ipv4) {
            let gw = IpAddr::V4(GATEWAY_V4);
            for r in [Route::dev(host_prefix(gw), pair.pod_index), Route::via(default_v4(), gw).with_oif(pair.pod_index)] {
                pod.replace_route(&r)
                    .await
                    .map_err(|e| dataplane_error(format!("adding route {} in {}", r.dst, req.netns), e))?;
            }
            // A permanent neighbour entry for the gateway, so the workload never depends on
            // the host answering ARP for it (proxy-ARP needs the host to have a route to
            // 169.254.1.1 out of another interface, which a lab node may not have).
            pod.set_neighbour(ifname, gw, HOST_VETH_MAC)
                .await
                .map_err(|e| dataplane_error(format!("adding neighbour {gw} on {ifname} in {}", req.netns), e))?;
            routes.push(CniRoute { dst: default_v4(), gw: Some(gw), mtu: None, scope: None });
        }
        for ip in ips {
            let r = Route::dev(host_prefix(*ip), pair.host_index);
            host.replace_route(&r).await.map_err(|e| dataplane_error(format!("adding host route {} dev {host_name}", r.dst), e))?;
        }
        Ok(routes)
    }

    // ----- DEL ---------------------------------------------------------------------------

    /// DEL: the addresses are released and the endpoint record deleted (concurrently), the
    /// host routes to the addresses are removed, so the workload is unreachable and its
    /// addresses reusable when DEL answers. The veth itself is deleted shortly after, in a
    /// batch with other DELs' (see [`REAP_GROUP`]): unregistering a device costs ~20 ms of
    /// kernel time under RTNL, most of a DEL's time otherwise. The attachment's lock is held
    /// until the link is gone, so a later ADD/DEL/CHECK of the same attachment waits for it;
    /// should the agent die first, the runtime's netns teardown removes the pair anyway and
    /// GC removes any leftover.
    async fn del(&self, req: &Request) -> Result<(), CniError> {
        let handle = Self::attachment(req, false)?;
        let host = self.host().await?.clone();
        let lock = self.lock(&handle.id()).await;
        let host_name = host_veth_name(&req.container_id, &req.ifname);
        let (link, released, endpoint) =
            tokio::join!(host.link(&host_name), self.release(&handle), self.delete_endpoint(req));
        let link = link.map_err(|e| dataplane_error(format!("looking up veth {host_name}"), e))?;
        let freed = released?;
        endpoint?;
        let Some(link) = link else { return Ok(()) };
        for ip in freed {
            let route = Route::dev(host_prefix(ip), link.index);
            host.delete_route(&route)
                .await
                .map_err(|e| dataplane_error(format!("deleting host route {} dev {host_name}", route.dst), e))?;
        }
        // Deleting the host end takes the workload end and its routes along.
        self.reaper.pending.lock().unwrap_or_else(|p| p.into_inner()).push((host_name, lock));
        if !self.reaper.running.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::spawn(self.reaper.clone().run(host));
        }
        self.reaper.wake.notify_one();
        Ok(())
    }

    /// Releases the handle's addresses (returned); notifies the agent when a block became
    /// empty.
    async fn release(&self, handle: &Handle) -> Result<Vec<IpAddr>, CniError> {
        let blocks = self.handle_blocks(handle).await?;
        let freed = self.ctx.ipam.release(handle).await.map_err(|e| ipam_error(&format!("releasing {handle}"), e))?;
        if freed.is_empty() {
            return Ok(freed);
        }
        for cidr in blocks {
            let key = ipam::keys::block_key(&cidr);
            let emptied = match self.ctx.store.get(&key).await {
                Ok(None) => true,
                Ok(Some(kv)) => serde_json::from_slice::<ipam::Block>(&kv.value).map(|b| b.is_empty()).unwrap_or(false),
                Err(_) => true, // Let the agent re-read: over-notifying is harmless.
            };
            if emptied {
                self.known_blocks.lock().unwrap_or_else(|p| p.into_inner()).remove(&cidr);
                self.ctx.blocks_changed.notify_one();
                break;
            }
        }
        Ok(freed)
    }

    /// The blocks the IPAM's handle index lists for `handle` (empty when it holds nothing).
    async fn handle_blocks(&self, handle: &Handle) -> Result<Vec<IpNet>, CniError> {
        let key = ipam::keys::handle_key(&handle.id());
        match self.ctx.store.get(&key).await {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(kv)) => serde_json::from_slice::<ipam::keys::HandleRecord>(&kv.value)
                .map(|r| r.blocks.into_iter().collect())
                .map_err(|e| CniError::new(codes::SEAM_DATASTORE, format!("datastore: corrupt record {key}")).with_details(e.to_string())),
            Err(e) => Err(store_error(&format!("reading {key}"), &e)),
        }
    }

    /// The addresses `handle` holds, read from its blocks (None: no allocation at all).
    async fn allocated_ips(&self, handle: &Handle) -> Result<Option<Vec<IpAddr>>, CniError> {
        let key = ipam::keys::handle_key(&handle.id());
        if self.ctx.store.get(&key).await.map_err(|e| store_error(&format!("reading {key}"), &e))?.is_none() {
            return Ok(None);
        }
        let mut ips = Vec::new();
        for cidr in self.handle_blocks(handle).await? {
            let bkey = ipam::keys::block_key(&cidr);
            if let Some(kv) = self.ctx.store.get(&bkey).await.map_err(|e| store_error(&format!("reading {bkey}"), &e))? {
                let block: ipam::Block = serde_json::from_slice(&kv.value).map_err(|e| {
                    CniError::new(codes::SEAM_DATASTORE, format!("datastore: corrupt record {bkey}")).with_details(e.to_string())
                })?;
                ips.extend(block.ips_of(&handle.id()));
            }
        }
        Ok(Some(ips))
    }

    /// Deletes the attachment's WorkloadEndpoint: by the name ADD gave it when the args say
    /// the same, else by searching this node's endpoints for the container id + interface.
    async fn delete_endpoint(&self, req: &Request) -> Result<(), CniError> {
        if let Ok(identity) = workload_identity(req, &self.ctx.orchestrator) {
            let name = endpoint_name(&self.ctx.node, &self.ctx.orchestrator, &identity.name, &req.ifname);
            match resources::get(&*self.ctx.store, Kind::WorkloadEndpoint, Some(&identity.namespace), Some(&name)).await {
                // Only this container's record: a restarted pod reuses the name with a new id.
                Ok(found) => {
                    if let Some(Resource::WorkloadEndpoint(w)) = found.first() {
                        if w.spec.container_id == req.container_id {
                            return self.delete_wep(w).await;
                        }
                    }
                }
                Err(ResourceError::NotFound { .. }) => {}
                Err(e) => return Err(resource_error("reading the WorkloadEndpoint", e)),
            }
        }
        for wep in self.node_endpoints().await? {
            if wep.spec.container_id == req.container_id && wep.spec.endpoint == req.ifname {
                self.delete_wep(&wep).await?;
            }
        }
        Ok(())
    }

    async fn delete_wep(&self, wep: &WorkloadEndpoint) -> Result<(), CniError> {
        match resources::delete(&*self.ctx.store, Kind::WorkloadEndpoint, Some(&wep.namespace), &wep.name).await {
            Ok(_) | Err(ResourceError::NotFound { .. }) => {}
            Err(e) => return Err(resource_error("deleting the WorkloadEndpoint", e)),
        }
        if let Some(policy) = &self.policy {
            // A failure is logged by the sync and retried by its next change or resync; the
            // endpoint's interface is going away anyway.
            let _ = policy.endpoint_removed(&wep.namespace, &wep.name).await;
        }
        Ok(())
    }

    /// Every WorkloadEndpoint recorded for this node.
    pub async fn node_endpoints(&self) -> Result<Vec<WorkloadEndpoint>, CniError> {
        let all = resources::get(&*self.ctx.store, Kind::WorkloadEndpoint, None, None)
            .await
            .map_err(|e| resource_error("listing WorkloadEndpoints", e))?;
        Ok(all
            .into_iter()
            .filter_map(|r| match r {
                Resource::WorkloadEndpoint(w) if w.spec.node == self.ctx.node => Some(w),
                _ => None,
            })
            .collect())
    }

    /// The host routes this node's workloads need (`ADDR/32 dev seamXXXX`, Seam protocol), for
    /// the agent's route reconcile: those routes carry Seam's protocol number, so a reconcile
    /// that does not list them as desired would delete them.
    pub async fn desired_host_routes(&self) -> Result<Vec<Route>, CniError> {
        let host = self.host().await?;
        let mut out = Vec::new();
        for wep in self.node_endpoints().await? {
            let Some(link) = host.link(&wep.spec.interface_name).await.ok().flatten() else { continue };
            for net in &wep.spec.ip_networks {
                out.push(Route::dev(host_prefix(net.addr()), link.index));
            }
        }
        Ok(out)
    }

    // ----- CHECK -------------------------------------------------------------------------

    async fn check(&self, req: &Request, via: Option<&str>) -> Result<(), CniError> {
        let handle = Self::attachment(req, true)?;
        let _lock = self.lock(&handle.id()).await;
        let Some(ips) = self.allocated_ips(&handle).await? else {
            return Err(CniError::new(
                codes::UNKNOWN_CONTAINER,
                format!("container {} interface {} has no Seam address on node {}", req.container_id, req.ifname, self.ctx.node),
            ));
        };
        if ips.is_empty() {
            return Err(check_failed(format!("container {} interface {}: its IPAM record lists no address", req.container_id, req.ifname)));
        }
        if let Some(prev) = req.config.get("prevResult").filter(|v| !v.is_null()) {
            let prev = CniResult::from_value(prev)?;
            let listed: BTreeSet<IpAddr> = prev.ips.iter().map(|c| c.address.addr()).collect();
            let held: BTreeSet<IpAddr> = ips.iter().copied().collect();
            if listed != held {
                return Err(check_failed(format!("prevResult lists {listed:?} but Seam allocated {held:?} to {handle}")));
            }
        }
        let host = self.host().await?;
        let host_name = host_veth_name(&req.container_id, &req.ifname);
        let Some(host_link) = host.link(&host_name).await.map_err(|e| dataplane_error(format!("looking up {host_name}"), e))? else {
            return Err(check_failed(format!("host veth {host_name} of container {} is missing", req.container_id)));
        };
        if !host_link.up {
            return Err(check_failed(format!("host veth {host_name} is down")));
        }
        let host_routes = host
            .routes_by_protocol(SEAM_ROUTE_PROTOCOL)
            .await
            .map_err(|e| dataplane_error("listing host routes", e))?;
        for ip in &ips {
            let dst = host_prefix(*ip);
            if !host_routes.iter().any(|r| r.dst == dst && r.oif == Some(host_link.index) && r.gateway.is_none()) {
                return Err(check_failed(format!("host route {dst} dev {host_name} is missing")));
            }
        }

        let pod_ns = Self::open_netns(req, via)?;
        let pod = Netlink::connect_in(&pod_ns).await.map_err(|e| dataplane_error(format!("opening netlink in {}", req.netns), e))?;
        let ifname = req.ifname.as_str();
        let Some(pod_link) = pod.link(ifname).await.map_err(|e| dataplane_error(format!("looking up {ifname}"), e))? else {
            return Err(check_failed(format!("interface {ifname} is missing in {}", req.netns)));
        };
        if !pod_link.up {
            return Err(check_failed(format!("interface {ifname} in {} is down", req.netns)));
        }
        let addrs = pod.addresses(ifname).await.map_err(|e| dataplane_error(format!("listing addresses of {ifname}"), e))?;
        for ip in &ips {
            if !addrs.contains(&host_prefix(*ip)) {
                return Err(check_failed(format!("address {} is missing on {ifname} in {}", host_prefix(*ip), req.netns)));
            }
        }
        if ips.iter().any(IpAddr::is_ipv4) {
            let routes = pod.routes().await.map_err(|e| dataplane_error(format!("listing routes in {}", req.netns), e))?;
            let gw = IpAddr::V4(GATEWAY_V4);
            if !routes.iter().any(|r| r.dst == default_v4() && r.gateway == Some(gw) && r.oif == Some(pod_link.index)) {
                return Err(check_failed(format!("default route via {gw} dev {ifname} is missing in {}", req.netns)));
            }
            if !routes.iter().any(|r| r.dst == host_prefix(gw) && r.oif == Some(pod_link.index)) {
                return Err(check_failed(format!("route {gw} dev {ifname} is missing in {}", req.netns)));
            }
        }
        Ok(())
    }

    // ----- GC ----------------------------------------------------------------------------

    async fn gc(&self, req: &Request) -> Result<(), CniError> {
        let valid: BTreeSet<Attachment> = cni::spec::valid_attachments(&req.config)?.into_iter().collect();
        let keep: BTreeSet<String> = valid.iter().map(|a| Handle::id_of(&a.container_id, &a.ifname)).collect();
        let keep_veths: BTreeSet<String> = valid.iter().map(|a| host_veth_name(&a.container_id, &a.ifname)).collect();

        // Allocations of this node that are not valid attachments.
        let (kvs, _) = self
            .ctx
            .store
            .list(ipam::keys::HANDLES)
            .await
            .map_err(|e| store_error("listing IPAM handles", &e))?;
        let mut stale: Vec<Handle> = Vec::new();
        for kv in kvs {
            let Ok(rec) = serde_json::from_slice::<ipam::keys::HandleRecord>(&kv.value) else { continue };
            if rec.node != self.ctx.node || keep.contains(&rec.handle) {
                continue;
            }
            if let Ok(h) = Handle::parse(&rec.handle) {
                stale.push(h);
            }
        }
        let host = self.host().await?.clone();
        for h in &stale {
            let _lock = self.lock(&h.id()).await;
            let name = host_veth_name(&h.container_id, &h.interface);
            host.delete_link(&name).await.map_err(|e| dataplane_error(format!("deleting veth {name}"), e))?;
            self.release(h).await?;
        }
        // Endpoints of this node that are not valid attachments.
        for wep in self.node_endpoints().await? {
            if !keep.contains(&Handle::id_of(&wep.spec.container_id, &wep.spec.endpoint)) {
                self.delete_wep(&wep).await?;
            }
        }
        // Leftover host veths (an ADD that crashed before its allocation was indexed).
        let links = host.links().await.map_err(|e| dataplane_error("listing links", e))?;
        for link in links {
            if link.kind.as_deref() == Some("veth") && is_host_veth_name(&link.name) && !keep_veths.contains(&link.name) {
                host.delete_link(&link.name).await.map_err(|e| dataplane_error(format!("deleting veth {}", link.name), e))?;
            }
        }
        Ok(())
    }

    // ----- STATUS ------------------------------------------------------------------------

    async fn status(&self) -> Result<(), CniError> {
        match self.ctx.store.revision().await {
            Ok(_) => Ok(()),
            Err(e) => Err(CniError::new(codes::PLUGIN_NOT_AVAILABLE, "Seam agent cannot reach its datastore").with_details(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(args: &[(&str, &str)], config: Value) -> Request {
        Request {
            command: Command::Add,
            container_id: "0123456789abcdef".into(),
            netns: "/run/netns/x".into(),
            netns_fd: None,
            ifname: "eth0".into(),
            args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            network_name: "seam".into(),
            cni_version: "1.1.0".into(),
            config,
        }
    }

    #[test]
    fn veth_names_are_stable_and_short() {
        let a = host_veth_name("0123456789abcdef", "eth0");
        assert_eq!(a.len(), 15);
        assert!(is_host_veth_name(&a), "{a}");
        assert_eq!(a, host_veth_name("0123456789abcdef", "eth0"));
        assert_ne!(a, host_veth_name("0123456789abcdef", "eth1"));
        assert_ne!(a, host_veth_name("0123456789abcde", "feth0"));
        assert!(!is_host_veth_name("seam0") && !is_host_veth_name("vxlan.seam") && !is_host_veth_name("seamZZZZZZZZZZZ"));
        let mac = workload_mac("0123456789abcdef", "eth0");
        assert_eq!(mac.0[0] & 0x03, 0x02, "locally administered unicast: {mac}");
        assert_eq!(mac, workload_mac("0123456789abcdef", "eth0"));
        assert_ne!(mac, workload_mac("0123456789abcdef", "eth1"));
    }

    #[test]
    fn endpoint_names_follow_calico() {
        assert_eq!(endpoint_name("node-1", "kubernetes", "web-0", "eth0"), "node--1-k8s-web--0-eth0");
        assert_eq!(endpoint_name("n1", "dcos", "My_Task", "eth0"), "n1-dcos-my.task-eth0");
        let long = "a".repeat(300);
        let n = endpoint_name("n1", "podman", &long, "eth0");
        assert!(n.len() <= 253 && n.starts_with("n1-podman-aaa"), "{n}");
    }

    /// The orchestrator label must hold what the policy layer matches on: the agent's
    /// `--orchestrator` as given, equal to `spec.orchestrator` (the endpoint *name* keeps
    /// Calico's short `k8s`).
    #[test]
    fn orchestrator_label_is_what_policy_selects_on() {
        let r = req(&[("K8S_POD_NAMESPACE", "shop"), ("K8S_POD_NAME", "web-0")], Value::Null);
        for orchestrator in ["kubernetes", "Kubernetes", "dcos", "podman", "cni"] {
            let id = workload_identity(&r, orchestrator).unwrap();
            let ip: IpAddr = "10.244.0.5".parse().unwrap();
            let wep = endpoint_record("n1", orchestrator, &r, &id, "seam0123456789a", &[ip]);
            assert_eq!(wep.labels[LABEL_ORCHESTRATOR], orchestrator);
            assert_eq!(wep.spec.orchestrator, orchestrator);
            // The compiler's view agrees with the stored record.
            let ep = policy::Endpoint::from_workload(&wep, "n1");
            assert_eq!(LABEL_ORCHESTRATOR, policy::ORCHESTRATOR_LABEL);
            assert_eq!(ep.labels[policy::ORCHESTRATOR_LABEL], ep.orchestrator);
            let selector = resources::Selector::parse(&format!("projectcalico.org/orchestrator == '{orchestrator}'")).unwrap();
            assert!(selector.matches(&wep.labels), "{orchestrator}: {:?}", wep.labels);
        }
        let id = workload_identity(&r, "kubernetes").unwrap();
        let wep = endpoint_record("n1", "kubernetes", &r, &id, "seam0123456789a", &[]);
        assert_eq!(wep.name, "n1-k8s-web--0-eth0");
        assert_eq!((wep.spec.pod.as_str(), wep.spec.workload.as_str()), ("web-0", ""));
        let selector = resources::Selector::parse("projectcalico.org/orchestrator == 'k8s'").unwrap();
        assert!(!selector.matches(&wep.labels), "the short id is not the label value");
        let wep = endpoint_record("n1", "dcos", &r, &workload_identity(&r, "dcos").unwrap(), "seam0123456789a", &[]);
        assert_eq!((wep.spec.pod.as_str(), wep.spec.workload.as_str()), ("", "web-0"));
    }

    #[test]
    fn identity_from_k8s_args_and_labels() {
        let r = req(
            &[("K8S_POD_NAMESPACE", "shop"), ("K8S_POD_NAME", "web-0")],
            serde_json::json!({"args": {"cni": {"labels": {"app": "web"}}, "podman_labels": {"bad key!": "x", "tier": "front"}}}),
        );
        let id = workload_identity(&r, "kubernetes").unwrap();
        assert_eq!((id.namespace.as_str(), id.name.as_str()), ("shop", "web-0"));
        assert_eq!(id.labels["app"], "web");
        assert_eq!(id.labels["tier"], "front");
        assert_eq!(id.labels[LABEL_ORCHESTRATOR], "kubernetes");
        assert_eq!(id.labels[LABEL_NAMESPACE], "shop");
        assert!(!id.labels.contains_key("bad key!"));

        let id = workload_identity(&req(&[], Value::Null), "podman").unwrap();
        assert_eq!((id.namespace.as_str(), id.name.as_str()), ("default", "0123456789ab"));

        let e = workload_identity(&req(&[], serde_json::json!({"args": {"cni": {"labels": {"a b": "x"}}}})), "podman").unwrap_err();
        assert_eq!(e.code, codes::INVALID_NETWORK_CONFIG);
        assert!(e.msg.starts_with("args.cni.labels.a b"), "{e}");
    }
}
