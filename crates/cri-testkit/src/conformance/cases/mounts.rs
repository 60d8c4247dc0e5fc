//! Mounts: bind mounts (read-write, read-only), mount propagation and image volumes.
//!
//! The host side of every mount lives under the sandbox's log directory, which the suite
//! creates on the runtime's host. Propagation needs a shared mount on the host: the suite
//! mounts a small tmpfs there (as root), and unmounts it when the case ends.

use std::path::{Path, PathBuf};
use std::process::Command;

use cri_client::cri_api::v1::*;
use tonic::Code;

use super::case;
use crate::conformance::ctx::{check, skip};
use crate::conformance::{Case, Ctx, Stop};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "mounts",
            "bind-read-write",
            "a host directory bind-mounted read-write: host files are visible inside, files written inside appear on the host",
            bind_read_write
        ),
        case!(
            "mounts",
            "bind-read-only",
            "a host directory bind-mounted read-only is readable, and writes inside fail",
            bind_read_only
        ),
        case!(
            "mounts",
            "propagation-private",
            "PROPAGATION_PRIVATE: a mount made on the host under the source after the start stays invisible inside",
            propagation_private
        ),
        case!(
            "mounts",
            "propagation-host-to-container",
            "PROPAGATION_HOST_TO_CONTAINER: a mount made on the host under the source after the start appears inside",
            propagation_host_to_container
        ),
        case!(
            "mounts",
            "propagation-bidirectional",
            "PROPAGATION_BIDIRECTIONAL (privileged): a mount made inside under the target appears on the host",
            propagation_bidirectional
        ),
        case!(
            "mounts",
            "propagation-needs-shared-source",
            "HOST_TO_CONTAINER and BIDIRECTIONAL mounts of a source on a private mount fail CreateContainer instead of mounting private",
            propagation_needs_shared_source
        ),
        case!(
            "mounts",
            "image-volume",
            "Mount.image mounts the image's root filesystem read-only at container_path",
            image_volume
        ),
    ]
}

/// Where the containers see the mounts.
const TARGET: &str = "/mnt/cri-testkit";

/// Reads the container's mount table; skips on a simulator (no real processes).
async fn mountinfo(ctx: &Ctx, id: &str) -> Result<String, Stop> {
    ctx.exec_ok(id, &["cat", "/proc/self/mountinfo"]).await
}

/// The mountinfo line whose mount point is `target`, if any (the last one wins: it is the
/// top of the stack).
fn mount_line<'a>(mountinfo: &'a str, target: &str) -> Option<&'a str> {
    mountinfo
        .lines()
        .rfind(|line| line.split(' ').nth(4) == Some(target))
}

/// A directory under the sandbox's log directory, created on the host.
fn host_dir(sandbox: &(String, PodSandboxConfig), name: &str) -> Result<PathBuf, Stop> {
    let dir = Path::new(&sandbox.1.log_directory).join(name);
    std::fs::create_dir_all(&dir).map_err(|e| {
        Stop::Skip(format!(
            "cannot create {} on the host (the suite must run on the runtime's host): {e}",
            dir.display()
        ))
    })?;
    Ok(dir)
}

fn bind(container_path: &str, host_path: &Path, propagation: MountPropagation) -> Mount {
    Mount {
        container_path: container_path.to_string(),
        host_path: host_path.display().to_string(),
        propagation: propagation as i32,
        ..Default::default()
    }
}

fn privileged_sandbox(config: &mut PodSandboxConfig) {
    config
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .privileged = true;
}

fn privileged_container(config: &mut ContainerConfig) {
    config
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .privileged = true;
}

/// Whether this process runs as root (mounting on the host needs it).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Runs a host command; its stderr on failure.
fn run(program: &str, args: &[&str], path: &Path) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {} {}` failed ({}): {}",
            args.join(" "),
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A tmpfs mounted on the host for one case; lazily unmounted (with everything mounted
/// below it) when dropped, so that every way out of the case cleans up.
struct HostTmpfs {
    path: PathBuf,
}

impl HostTmpfs {
    /// Mounts a 1 MiB tmpfs at `path` and applies `propagation` (`--make-shared`,
    /// `--make-private`). Skips, naming why, when not root or when mounting fails.
    fn mount(path: PathBuf, propagation: &str) -> Result<Self, Stop> {
        if !is_root() {
            return skip(
                "the suite does not run as root: it cannot mount the host tmpfs propagation needs",
            );
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| Stop::Skip(format!("cannot create {}: {e}", path.display())))?;
        run(
            "mount",
            &["-t", "tmpfs", "-o", "size=1m", "cri-testkit"],
            &path,
        )
        .map_err(|e| Stop::Skip(format!("the host cannot mount a tmpfs: {e}")))?;
        // From here on, dropping `mounted` unmounts.
        let mounted = Self { path };
        run("mount", &[propagation], &mounted.path)
            .map_err(|e| Stop::Skip(format!("the host cannot change propagation: {e}")))?;
        Ok(mounted)
    }

    /// Mounts another tmpfs at `sub` (below this one) and writes `marker` there.
    fn mount_below(&self, sub: &str, marker: &str) -> Result<(), Stop> {
        let path = self.path.join(sub);
        run(
            "mount",
            &["-t", "tmpfs", "-o", "size=1m", "cri-testkit-sub"],
            &path,
        )
        .map_err(|e| Stop::Skip(format!("the host cannot mount a tmpfs: {e}")))?;
        std::fs::write(path.join("marker"), marker).map_err(|e| {
            Stop::Skip(format!(
                "cannot write into the host tmpfs {}: {e}",
                path.display()
            ))
        })
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        if let Err(error) = run("umount", &["-l"], &self.path) {
            tracing::warn!(%error, "cannot unmount the conformance tmpfs");
        }
    }
}

/// Starts a container with no mounts and checks it runs real processes (skips on a
/// simulator before anything is mounted on the host).
async fn require_real_processes(
    ctx: &Ctx,
    sandbox: &(String, PodSandboxConfig),
) -> Result<(), Stop> {
    let probe = ctx.start_container(sandbox, "probe", ctx.sleeper()).await?;
    mountinfo(ctx, &probe).await.map(|_| ())
}

async fn bind_read_write(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let dir = host_dir(&sandbox, "rw-volume")?;
    std::fs::write(dir.join("from-host"), "written on the host\n")
        .map_err(|e| Stop::Skip(format!("cannot write {}: {e}", dir.display())))?;
    let id = ctx
        .start_container_with(&sandbox, "rw", ctx.sleeper(), |c| {
            c.mounts = vec![bind(TARGET, &dir, MountPropagation::PropagationPrivate)];
        })
        .await?;
    let table = mountinfo(&ctx, &id).await?;
    let line = mount_line(&table, TARGET);
    check(
        line.is_some(),
        &format!("{TARGET} is a mount point in the container"),
        "a mountinfo entry",
        &table,
    )?;
    let seen = ctx
        .exec_ok(&id, &["cat", &format!("{TARGET}/from-host")])
        .await?;
    check(
        seen == "written on the host\n",
        "a host file read inside the container",
        "written on the host\n",
        &seen,
    )?;
    ctx.exec_ok(
        &id,
        &[
            "sh",
            "-c",
            &format!("echo written-inside > {TARGET}/from-container"),
        ],
    )
    .await?;
    let on_host = std::fs::read_to_string(dir.join("from-container"));
    check(
        on_host.as_deref().ok() == Some("written-inside\n"),
        "the file written inside, read on the host",
        "written-inside\n",
        on_host.map_err(|e| e.to_string()),
    )
}

async fn bind_read_only(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    let dir = host_dir(&sandbox, "ro-volume")?;
    std::fs::write(dir.join("from-host"), "read-only data\n")
        .map_err(|e| Stop::Skip(format!("cannot write {}: {e}", dir.display())))?;
    let id = ctx
        .start_container_with(&sandbox, "ro", ctx.sleeper(), |c| {
            let mut mount = bind(TARGET, &dir, MountPropagation::PropagationPrivate);
            mount.readonly = true;
            c.mounts = vec![mount];
        })
        .await?;
    let table = mountinfo(&ctx, &id).await?;
    let line = mount_line(&table, TARGET).unwrap_or_default();
    let options = line.split(' ').nth(5).unwrap_or_default();
    check(
        options.split(',').any(|o| o == "ro"),
        &format!("{TARGET} is mounted with option ro"),
        "ro",
        line,
    )?;
    let seen = ctx
        .exec_ok(&id, &["cat", &format!("{TARGET}/from-host")])
        .await?;
    check(
        seen == "read-only data\n",
        "a host file read inside the container",
        "read-only data\n",
        &seen,
    )?;
    let write = ctx
        .exec(
            &id,
            &["sh", "-c", &format!("echo nope > {TARGET}/from-container")],
        )
        .await?;
    check(
        write.exit_code != 0,
        "writing into the read-only mount",
        "a non-zero exit (EROFS)",
        format!(
            "exit {}: {}",
            write.exit_code,
            String::from_utf8_lossy(&write.stderr).trim()
        ),
    )?;
    check(
        !dir.join("from-container").exists(),
        "no file appears on the host",
        "absent",
        dir.join("from-container"),
    )
}

/// Sets up `propagation` from a shared host tmpfs into a container, then mounts below the
/// source on the host; returns whether the container sees the new mount's marker.
async fn host_mount_seen_inside(
    ctx: &Ctx,
    propagation: MountPropagation,
) -> Result<(bool, String), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    require_real_processes(ctx, &sandbox).await?;
    let tmpfs = HostTmpfs::mount(
        Path::new(&sandbox.1.log_directory).join("shared"),
        "--make-shared",
    )?;
    std::fs::create_dir_all(tmpfs.path.join("sub"))
        .map_err(|e| Stop::Skip(format!("cannot create a directory in the tmpfs: {e}")))?;
    let id = ctx
        .start_container_with(&sandbox, "prop", ctx.sleeper(), |c| {
            c.mounts = vec![bind(TARGET, &tmpfs.path, propagation)];
        })
        .await?;
    // The container sees the (empty) sub directory before the host mounts there.
    let before = ctx
        .exec(&id, &["cat", &format!("{TARGET}/sub/marker")])
        .await?;
    check(
        before.exit_code != 0,
        "no marker before the host mounts",
        "cat fails",
        String::from_utf8_lossy(&before.stdout),
    )?;
    tmpfs.mount_below("sub", "mounted on the host\n")?;
    let after = ctx
        .exec(&id, &["cat", &format!("{TARGET}/sub/marker")])
        .await?;
    let table = mountinfo(ctx, &id).await?;
    let seen =
        after.exit_code == 0 && String::from_utf8_lossy(&after.stdout) == "mounted on the host\n";
    drop(tmpfs);
    Ok((seen, table))
}

async fn propagation_private(ctx: Ctx) -> Result<(), Stop> {
    let (seen, table) = host_mount_seen_inside(&ctx, MountPropagation::PropagationPrivate).await?;
    check(
        !seen,
        "a host mount made below a PRIVATE source after the start",
        "invisible in the container",
        format!("visible; container mountinfo:\n{table}"),
    )
}

async fn propagation_host_to_container(ctx: Ctx) -> Result<(), Stop> {
    let (seen, table) =
        host_mount_seen_inside(&ctx, MountPropagation::PropagationHostToContainer).await?;
    check(
        seen,
        "a host mount made below a HOST_TO_CONTAINER source after the start",
        "visible in the container (rslave)",
        format!("invisible; container mountinfo:\n{table}"),
    )
}

async fn propagation_bidirectional(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox_with("pod", privileged_sandbox).await?;
    require_real_processes(&ctx, &sandbox).await?;
    let tmpfs = HostTmpfs::mount(
        Path::new(&sandbox.1.log_directory).join("shared"),
        "--make-shared",
    )?;
    std::fs::create_dir_all(tmpfs.path.join("sub"))
        .map_err(|e| Stop::Skip(format!("cannot create a directory in the tmpfs: {e}")))?;
    let id = ctx
        .start_container_with(&sandbox, "prop", ctx.sleeper(), |c| {
            c.mounts = vec![bind(
                TARGET,
                &tmpfs.path,
                MountPropagation::PropagationBidirectional,
            )];
            privileged_container(c);
        })
        .await?;
    ctx.exec_ok(
        &id,
        &[
            "sh",
            "-c",
            &format!(
                "mount -t tmpfs inner {TARGET}/sub && echo mounted-inside > {TARGET}/sub/marker"
            ),
        ],
    )
    .await?;
    let on_host = std::fs::read_to_string(tmpfs.path.join("sub/marker"));
    let host_table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    drop(tmpfs);
    check(
        on_host.as_deref().ok() == Some("mounted-inside\n"),
        "a mount made inside below a BIDIRECTIONAL target, seen on the host",
        "mounted-inside\n (rshared)",
        format!(
            "{:?}; host mountinfo lines for the sandbox: {:?}",
            on_host.map_err(|e| e.to_string()),
            host_table
                .lines()
                .filter(|l| l.contains(&sandbox.1.log_directory))
                .collect::<Vec<_>>()
        ),
    )
}

async fn propagation_needs_shared_source(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox_with("pod", privileged_sandbox).await?;
    require_real_processes(&ctx, &sandbox).await?;
    let tmpfs = HostTmpfs::mount(
        Path::new(&sandbox.1.log_directory).join("private"),
        "--make-private",
    )?;
    let result = needs_shared_source(&ctx, &sandbox, &tmpfs.path).await;
    drop(tmpfs);
    result
}

async fn needs_shared_source(
    ctx: &Ctx,
    sandbox: &(String, PodSandboxConfig),
    source: &Path,
) -> Result<(), Stop> {
    // The same source with private propagation is fine: what fails below is propagation.
    let control = ctx
        .start_container_with(sandbox, "control", ctx.sleeper(), |c| {
            c.mounts = vec![bind(TARGET, source, MountPropagation::PropagationPrivate)];
            privileged_container(c);
        })
        .await?;
    let table = mountinfo(ctx, &control).await?;
    check(
        mount_line(&table, TARGET).is_some(),
        "the control container (PRIVATE propagation) has the mount",
        TARGET,
        &table,
    )?;
    for (name, propagation, needs) in [
        (
            "host-to-container",
            MountPropagation::PropagationHostToContainer,
            "a shared or slave mount",
        ),
        (
            "bidirectional",
            MountPropagation::PropagationBidirectional,
            "a shared mount",
        ),
    ] {
        let mut config = ctx.container_config(name, ctx.sleeper());
        config.mounts = vec![bind(TARGET, source, propagation)];
        privileged_container(&mut config);
        let created = ctx
            .client()
            .create_container(&sandbox.0, config, Some(sandbox.1.clone()))
            .await;
        check(
            created.is_err(),
            &format!(
                "CreateContainer with {} of {} (on a private mount)",
                propagation.as_str_name(),
                source.display()
            ),
            format!("an error: the source must be on {needs}, as containerd requires"),
            created.map(|id| format!("container {id} created (the mount would be private)")),
        )?;
    }
    Ok(())
}

async fn image_volume(ctx: Ctx) -> Result<(), Stop> {
    let sandbox = ctx.run_sandbox("pod").await?;
    ctx.ensure_image().await?;
    let mut config = ctx.container_config("image-volume", ctx.sleeper());
    config.mounts = vec![Mount {
        container_path: TARGET.to_string(),
        image: Some(ImageSpec {
            image: ctx.config().image.clone(),
            ..Default::default()
        }),
        readonly: true,
        ..Default::default()
    }];
    let created = ctx
        .client()
        .create_container(&sandbox.0, config, Some(sandbox.1.clone()))
        .await;
    let id = match created {
        Ok(id) => id,
        Err(e) if e.is_unimplemented() => {
            return skip(format!(
                "image volumes are not supported: CreateContainer answers Unimplemented: {e}"
            ));
        }
        Err(e)
            if matches!(
                e.code(),
                Some(Code::InvalidArgument | Code::FailedPrecondition)
            ) && {
                let text = e.to_string().to_lowercase();
                text.contains("not supported") || text.contains("unsupported")
            } =>
        {
            return skip(format!(
                "image volumes are not supported: CreateContainer answers {:?}: {e}",
                e.code().unwrap_or(Code::Unknown)
            ));
        }
        Err(e) => return Err(e.into()),
    };
    ctx.client().start_container(&id).await?;
    let listing = ctx.exec_ok(&id, &["ls", &format!("{TARGET}/bin")]).await?;
    check(
        listing.lines().any(|l| l == "sh"),
        &format!("the image's /bin/sh is at {TARGET}/bin/sh"),
        "sh listed",
        &listing,
    )?;
    let write = ctx
        .exec(&id, &["touch", &format!("{TARGET}/written")])
        .await?;
    check(
        write.exit_code != 0,
        "writing into the image volume",
        "fails (image volumes are read-only)",
        format!("exit {}", write.exit_code),
    )
}
