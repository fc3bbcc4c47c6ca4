//! `build_pack: dockerfile`: the repository's Dockerfile becomes an OCI image with buildah, and
//! the image's root filesystem and run configuration become the build output, which the local
//! runtime runs in a sandbox with that filesystem as its root.
//!
//! buildah runs rootless inside the build's sandbox (`sandbox::image_build`): uid 65534 on the
//! host in a user namespace of its own, in the sandbox's sealed network namespace (`RUN` steps
//! reach only the egress proxy, through the proxy variables buildah passes on) and cgroups (the
//! build's memory and process limits; killed with the sandbox at the build timeout), with a
//! private image store in the build's staging directory. The image's tree is exported by the
//! sandbox user without setuid/setgid bits or special files; for the cluster runtime it is also
//! written as an OCI layout there and uploaded to the registry over its HTTP API
//! ([`crate::registry::Registry::push_layout`]): the host never unpacks a tenant's image as root.
//! Base images are never pulled (`--pull=never`) and the host's own images are not offered to
//! tenants: a Dockerfile builds `FROM scratch`.
//!
//! [`package`] is the other way to an image (plan builds, for the cluster runtime): it runs on
//! the host, as root, because it runs no tenant code (a generated Dockerfile of `FROM` the
//! operator's base image, `COPY` and `ENV`, no `RUN`) and needs the operator's base images in
//! the host's store; the tenant's output is copied into its context without setuid/setgid bits
//! or special files first.

use std::path::Path;
use std::process::Stdio;

use bus::LogSink;
use events::{FailureReason, ImageRun};
use sandbox::image_build::ImageStore;
use tokio::process::Command;

use crate::build::{Outcome, retry};

const BUILDAH: &str = "buildah";

/// Where the build's image store lives: in the staging directory (`out`), which the builder
/// removes whatever happens to the build.
const STORE_DIR: &str = ".buildah";

/// Builds `work`'s Dockerfile and exports the image into `out/rootfs`. `start` (the service's
/// start_command) replaces the image's entrypoint and command. `out` must be a new directory of
/// root's.
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
    let store = ImageStore::create(&out.join(STORE_DIR)).await.map_err(retry)?;
    let result = build_in(sandbox, &store, work, out, tag, start, env, push, &command, log).await;
    // Every process of the build has ended by now (each ran to its end in its own pid namespace).
    if let Err(e) = store.remove().await {
        tracing::warn!(error = %e, "removing a build's image store failed");
    }
    let run = result?;
    log.platform(format!("image: runs {:?} in {}", run.argv, run.working_dir)).await;
    Ok(run)
}

#[allow(clippy::too_many_arguments)]
async fn build_in(
    sandbox: &sandbox::Sandbox,
    store: &ImageStore,
    work: &Path,
    out: &Path,
    tag: &str,
    start: Option<&str>,
    env: &[(String, String)],
    push: Option<(&crate::registry::Registry, String, String)>,
    command: &str,
    log: &mut LogSink,
) -> Result<ImageRun, Outcome> {
    let mut bud = sandbox.build_image(store, work, "Dockerfile", tag, env).await.map_err(retry)?;
    let mut lines = bud.lines();
    while let Some(line) = lines.recv().await {
        log.line(line.stream.as_str(), line.text).await;
    }
    let status = bud.wait().await.map_err(retry)?;
    if !status.success() {
        let mut tail = log.tail();
        if tail.iter().any(|l| l.contains("image not known")) {
            tail.push(
                "base images cannot be pulled on this platform: build FROM scratch, or use build_pack railpack".into(),
            );
        }
        if sandbox.oom_kills() > 0 {
            tail.push("the build ran out of memory (the platform's build memory limit)".into());
        }
        let exit_code = match status {
            sandbox::ExitStatus::Code(code) => Some(code),
            sandbox::ExitStatus::Signal(_) => None,
        };
        return Err(Outcome::Failed(FailureReason::BuildFailed {
            command: command.to_owned(),
            exit_code,
            log_tail: tail,
        }));
    }
    // The registry gets the image from an OCI layout the sandbox writes next to the export.
    let layout = push.as_ref().map(|_| "latest");
    let exported = match sandbox.export_image(store, tag, &out.join("rootfs"), layout).await {
        Ok(exported) => exported,
        // What the export ran into is in the image (the tenant's), so it fails the same way again.
        Err(sandbox::Error::Command { stderr, .. }) => {
            return Err(Outcome::Failed(FailureReason::BuildFailed {
                command: "export the image's files".into(),
                exit_code: None,
                log_tail: stderr.lines().map(str::to_owned).collect(),
            }));
        }
        Err(e) => return Err(retry(e)),
    };
    let mut run = image_run(&exported.inspect, start)?;
    // For the cluster runtime: the image goes to the registry, tagged by commit (pushed once).
    if let (Some((registry, name, image_tag)), Some(layout)) = (push, exported.layout) {
        log.platform(format!("push: {}", registry.reference(&name, &image_tag))).await;
        let pushed = registry
            .push_layout(&layout, &name, &image_tag)
            .await
            .map_err(|e| Outcome::Retry(format!("pushing the image: {e}")))?;
        run.pushed = Some(format!("{}@{}", pushed.reference, pushed.digest));
    }
    Ok(run)
}

/// How the image runs, from `buildah inspect --type image`: `start` replaces its entrypoint and
/// command.
fn image_run(inspect: &str, start: Option<&str>) -> Result<ImageRun, Outcome> {
    let info: serde_json::Value = serde_json::from_str(inspect).map_err(retry)?;
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
    Ok(ImageRun { argv, env: strings(&config["Env"]), working_dir, pushed: None })
}

/// What a plan build's image carries besides its output: the toolchains it ran with (host
/// directory, guest path) and the variables it runs with.
pub(crate) struct Extras<'a> {
    pub toolchains: &'a [(std::path::PathBuf, String)],
    pub env: &'a [(String, String)],
}

/// Packages a plan's build output (`out`) onto `base`: `/app` holds the output, and the image
/// runs the plan's start command (a static site: busybox `httpd` on `$PORT`, which the base
/// must provide). Pushes it and returns `<reference>@<digest>`.
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
    if let Err(e) = copy_output(out, &context.join("app")).await {
        let _ = tokio::fs::remove_dir_all(&context).await;
        return Err(Outcome::Retry(format!("copying the build output for its image failed: {e}")));
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

/// Copies a tenant's build output (`from`'s contents) into `to` as root for an image: symlinks
/// stay links (never followed), ownership and the other mode bits are kept, but setuid and setgid
/// bits are not (cp drops them when it does not preserve the mode; umask 0 keeps the rest), and
/// FIFOs and sockets (a sandbox cannot make device nodes, but nor do they belong in an image)
/// are left out. Nothing of the tenant runs meanwhile: its build sandboxes are gone.
async fn copy_output(from: &Path, to: &Path) -> std::io::Result<()> {
    let script = "umask 0 && cp -R --preserve=ownership,timestamps,links -- \"$1/.\" \"$2\" && \
        find \"$2\" -xdev \\( -type b -o -type c -o -type p -o -type s \\) -delete";
    let out = Command::new("/bin/sh")
        .args(["-c", script, "copy-output"])
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        return Err(std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(())
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
