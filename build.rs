//! Bakes the git revision into `balance_exporter_build_info{revision}`.
//! Outside a git checkout (a source tarball, a Docker context without .git)
//! the revision is `unknown`; `BALANCE_EXPORTER_REVISION` in the build
//! environment overrides both.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BALANCE_EXPORTER_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("BALANCE_EXPORTER_REVISION").ok().filter(|r| !r.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !rev.is_empty()).then_some(rev)
    });
    println!("cargo:rustc-env=BALANCE_EXPORTER_REVISION={}", revision.as_deref().unwrap_or("unknown"));
}
