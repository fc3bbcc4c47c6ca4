//! `build_pack: dockerfile`: the repository's Dockerfile becomes an OCI image with buildah, and
//! the image's root filesystem and run configuration become the build output, which the local
//! runtime runs in a sandbox with that filesystem as its root.
//!
//! buildah runs with chroot isolation inside a sandbox's network namespace, so `RUN` steps have
//! the apps' network (no platform services, no private ranges). Base images are never pulled
//! here (`--pull=never`): a Dockerfile builds `FROM scratch` or from images already on the
//! machine.

use std::path::Path;
use std::process::Stdio;

use bus::LogSink;
use events::{FailureReason, ImageRun};
use tokio::process::Command;

use crate::build::{Outcome, retry};

const BUILDAH: &str = "buildah";

/// Builds `work`'s Dockerfile and exports the image into `out/rootfs`. `start` (the service's
/// start_command) replaces the image's entrypoint and command.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build(
    sandbox: &sandbox::Sandbox,
    work: &Path,
    out: &Path,
    tag: &str,
    start: Option<&str>,
    env: &[(String, String)],
    push: Option<(&crate::registry::Registry, String, String)>,
    log: &mut LogSink,
) -> Result<ImageRun, Outcome> {
    let command = format!("buildah bud --isolation chroot --pull=never -f Dockerfile -t {tag} .");
    log.platform(format!("build: $ {command}")).await;
    let mut bud = Command::new("ip");
    bud.args(["netns", "exec", sandbox.netns(), BUILDAH, "bud", "--isolation", "chroot", "--pull=never"])
        .args(["--layers=false", "-f", "Dockerfile", "-t", tag, "."])
        .current_dir(work);
    let status = run_logged(bud, env, log).await.map_err(retry)?;
    if !status.success() {
        let mut tail = log.tail();
        if tail.iter().any(|l| l.contains("image not known")) {
            tail.push(
                "base images cannot be pulled on this platform: build FROM scratch, or use build_pack railpack".into(),
            );
        }
        return Err(Outcome::Failed(FailureReason::BuildFailed { command, exit_code: status.code(), log_tail: tail }));
    }
    let mut result = export(tag, out, start).await;
    // For the cluster runtime: the image goes to the registry, tagged by commit (pushed once).
    if let (Ok(run), Some((registry, name, image_tag))) = (&mut result, push) {
        log.platform(format!("push: {}", registry.reference(&name, &image_tag))).await;
        match registry.push(tag, &name, &image_tag).await {
            Ok(pushed) => run.pushed = Some(format!("{}@{}", pushed.reference, pushed.digest)),
            Err(e) => result = Err(Outcome::Retry(format!("pushing the image: {e}"))),
        }
    }
    let _ = buildah(&["rmi", "-f", tag]).await;
    let run = result?;
    log.platform(format!("image: runs {:?} in {}", run.argv, run.working_dir)).await;
    Ok(run)
}

/// Packages a plan's build output (`out`) onto `base`: `/app` holds the output, and the image
/// runs the plan's start command (a static site: busybox `httpd` on `$PORT`, which the base
/// must provide). Pushes it and returns `<reference>@<digest>`.
/// What a plan build's image carries besides its output: the toolchains it ran with (host
/// directory, guest path) and the variables it runs with.
pub(crate) struct Extras<'a> {
    pub toolchains: &'a [(std::path::PathBuf, String)],
    pub env: &'a [(String, String)],
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn package(
    sandbox: &sandbox::Sandbox,
    out: &Path,
    base: &str,
    plan: &crate::plan::Plan,
    extras: Extras<'_>,
    local: &str,
    (registry, name, tag): (&crate::registry::Registry, String, String),
    log: &mut LogSink,
) -> Result<String, Outcome> {
    let start = match (&plan.start, &plan.static_root) {
        (Some(start), _) => start.clone(),
        (None, root) => format!("exec httpd -f -p \"${{PORT:-8080}}\" -h /app/{}", root.as_deref().unwrap_or(".")),
    };
    let context = out.with_extension("package");
    let _ = tokio::fs::remove_dir_all(&context).await;
    tokio::fs::create_dir_all(context.join("app")).await.map_err(retry)?;
    let cp = Command::new("cp").arg("-a").arg(format!("{}/.", out.display())).arg(context.join("app")).output().await;
    if !cp.as_ref().is_ok_and(|o| o.status.success()) {
        let _ = tokio::fs::remove_dir_all(&context).await;
        return Err(Outcome::Retry("copying the build output for its image failed".into()));
    }
    let mut dockerfile = format!("FROM {base}\nCOPY app /app\n");
    // The toolchains at the paths the build used: the venv's interpreter link, node_modules'
    // native modules and PATH all expect them there.
    for (i, (host, guest)) in extras.toolchains.iter().enumerate() {
        let name = format!("toolchain-{i}");
        let cp = Command::new("cp").arg("-a").arg(host).arg(context.join(&name)).output().await;
        if !cp.as_ref().is_ok_and(|o| o.status.success()) {
            let _ = tokio::fs::remove_dir_all(&context).await;
            return Err(Outcome::Retry(format!("copying the toolchain {} for its image failed", host.display())));
        }
        dockerfile.push_str(&format!("COPY {name} {guest}\n"));
    }
    for (key, value) in extras.env {
        let value = serde_json::to_string(value).map_err(retry)?;
        dockerfile.push_str(&format!("ENV {key}={value}\n"));
    }
    let cmd = serde_json::to_string(&["/bin/sh", "-c", &start]).map_err(retry)?;
    dockerfile.push_str(&format!("WORKDIR /app\nCMD {cmd}\n"));
    tokio::fs::write(context.join("Dockerfile"), dockerfile).await.map_err(retry)?;
    log.platform(format!("package: FROM {base}, CMD {start}")).await;
    let mut bud = Command::new("ip");
    bud.args(["netns", "exec", sandbox.netns(), BUILDAH, "bud", "--isolation", "chroot", "--pull=never"])
        .args(["--layers=false", "-f", "Dockerfile", "-t", local, "."])
        .current_dir(&context);
    let status = run_logged(bud, &[], log).await;
    let _ = tokio::fs::remove_dir_all(&context).await;
    let status = status.map_err(retry)?;
    if !status.success() {
        let _ = buildah(&["rmi", "-f", local]).await;
        return Err(Outcome::Failed(FailureReason::BuildFailed {
            command: format!("package onto {base}"),
            exit_code: status.code(),
            log_tail: log.tail(),
        }));
    }
    log.platform(format!("push: {}", registry.reference(&name, &tag))).await;
    let pushed = registry.push(local, &name, &tag).await;
    let _ = buildah(&["rmi", "-f", local]).await;
    let pushed = pushed.map_err(|e| Outcome::Retry(format!("pushing the image: {e}")))?;
    Ok(format!("{}@{}", pushed.reference, pushed.digest))
}

/// Copies the image's filesystem out and reads how it runs.
async fn export(tag: &str, out: &Path, start: Option<&str>) -> Result<ImageRun, Outcome> {
    let inspect = buildah(&["inspect", "--type", "image", tag]).await.map_err(retry)?;
    let info: serde_json::Value = serde_json::from_str(&inspect).map_err(retry)?;
    let config = &info["OCIv1"]["config"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    let argv = match start {
        Some(cmd) => vec!["/bin/sh".to_owned(), "-c".to_owned(), cmd.to_owned()],
        None => [strings(&config["Entrypoint"]), strings(&config["Cmd"])].concat(),
    };
    if argv.is_empty() {
        return Err(Outcome::Failed(FailureReason::BuildFailed {
            command: "read the image's CMD".into(),
            exit_code: None,
            log_tail: vec![
                "the image has no ENTRYPOINT or CMD: add one to the Dockerfile, or set start_command".into(),
            ],
        }));
    }
    let working_dir = config["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_owned();
    let container = buildah(&["from", "--pull=never", tag]).await.map_err(retry)?.trim().to_owned();
    let copied = async {
        let mount = buildah(&["mount", &container]).await?.trim().to_owned();
        let rootfs = out.join("rootfs");
        tokio::fs::create_dir_all(&rootfs).await?;
        let cp = Command::new("cp").arg("-a").arg(format!("{mount}/.")).arg(&rootfs).output().await?;
        if !cp.status.success() {
            return Err(std::io::Error::other(format!("cp: {}", String::from_utf8_lossy(&cp.stderr).trim())));
        }
        Ok(())
    }
    .await;
    let _ = buildah(&["umount", &container]).await;
    let _ = buildah(&["rm", &container]).await;
    copied.map_err(retry)?;
    Ok(ImageRun { argv, env: strings(&config["Env"]), working_dir, pushed: None })
}

/// Runs buildah to completion and returns its standard output.
async fn buildah(args: &[&str]) -> std::io::Result<String> {
    let out = Command::new(BUILDAH).args(args).stdin(Stdio::null()).kill_on_drop(true).output().await?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "buildah {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with its output going line by line to the build log.
async fn run_logged(
    mut command: Command,
    env: &[(String, String)],
    log: &mut LogSink,
) -> std::io::Result<std::process::ExitStatus> {
    let mut child = command
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<sandbox::LogLine>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(sandbox::read_lines(out, sandbox::Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(sandbox::read_lines(err, sandbox::Stream::Stderr, tx.clone()));
    }
    drop(tx);
    while let Some(line) = rx.recv().await {
        log.line(line.stream.as_str(), line.text).await;
    }
    child.wait().await
}
