//! nftables loading. The ruleset text is rendered elsewhere (the `policy` crate); here it is
//! handed to `nft -f -` as one batch, which the kernel applies atomically: if any line fails,
//! nothing changes and the previous ruleset stays. Listing and deleting are limited to Seam's
//! own table so Seam never edits another program's rules.

use crate::error::{Error, Result};
use crate::netns::{self, NetNs};

/// The family of Seam's table (`inet`: one table for IPv4 and IPv6).
pub const SEAM_TABLE_FAMILY: &str = "inet";
/// The name of Seam's table.
pub const SEAM_TABLE: &str = "seam";

/// Runs `nft` with `args` and `stdin` in `ns` (None: this process's namespace).
async fn nft(
    ns: Option<&NetNs>,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<std::process::Output> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(|s| s.as_bytes().to_vec());
    match ns {
        Some(ns) => {
            ns.run(move || netns::run_command("nft", &args, stdin.as_deref()))
                .await?
        }
        None => {
            tokio::task::spawn_blocking(move || netns::run_command("nft", &args, stdin.as_deref()))
                .await
                .map_err(|e| Error::io("nft task", std::io::Error::other(e)))?
        }
    }
}

fn status_text(out: &std::process::Output) -> String {
    match out.status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    }
}

/// Loads `ruleset` with `nft -f -` in one atomic transaction. On failure the error carries
/// nft's stderr (which names the offending line) and the old rules are untouched.
pub async fn load(ns: Option<&NetNs>, ruleset: &str) -> Result<()> {
    let out = nft(ns, &["-f", "-"], Some(ruleset)).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft {
            op: "load",
            status: status_text(&out),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The text of a batch that atomically replaces Seam's table with one whose body is `body`
/// (chains, sets, maps: what goes between the braces of `table inet seam { ... }`). Creating
/// the table first makes the delete valid when it does not exist yet.
pub fn replace_table_ruleset(body: &str) -> String {
    format!(
        "table {f} {t}\ndelete table {f} {t}\ntable {f} {t} {{\n{body}\n}}\n",
        f = SEAM_TABLE_FAMILY,
        t = SEAM_TABLE
    )
}

/// Atomically replaces Seam's table with `body` (see [`replace_table_ruleset`]).
pub async fn replace_table(ns: Option<&NetNs>, body: &str) -> Result<()> {
    load(ns, &replace_table_ruleset(body)).await
}

/// `nft list table inet seam`, or None when Seam's table does not exist.
pub async fn list_table(ns: Option<&NetNs>) -> Result<Option<String>> {
    let out = nft(ns, &["list", "table", SEAM_TABLE_FAMILY, SEAM_TABLE], None).await?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("No such file or directory") {
        return Ok(None);
    }
    Err(Error::Nft {
        op: "list table",
        status: status_text(&out),
        stderr,
    })
}

/// Deletes Seam's table (and everything in it). Returns false when there was none.
pub async fn delete_table(ns: Option<&NetNs>) -> Result<bool> {
    let out = nft(
        ns,
        &["delete", "table", SEAM_TABLE_FAMILY, SEAM_TABLE],
        None,
    )
    .await?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("No such file or directory") {
        return Ok(false);
    }
    Err(Error::Nft {
        op: "delete table",
        status: status_text(&out),
        stderr,
    })
}
