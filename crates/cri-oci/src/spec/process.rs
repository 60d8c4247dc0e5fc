//! The process: arguments, environment and working directory from the CRI config and the
//! image's config.

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Process, Spec};

use crate::{Error, Result};

/// `PATH` for processes whose image does not set one (the value Docker and runc use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image config's `config` section values we use, with defaults when absent.
pub(crate) struct ImageProcess<'a> {
    pub(crate) entrypoint: &'a [String],
    pub(crate) cmd: &'a [String],
    pub(crate) env: &'a [String],
    pub(crate) working_dir: &'a str,
    pub(crate) user: &'a str,
}

impl<'a> ImageProcess<'a> {
    pub(crate) fn of(image: &'a ImageConfiguration) -> Self {
        match image.config() {
            Some(config) => Self {
                entrypoint: config.entrypoint().as_deref().unwrap_or_default(),
                cmd: config.cmd().as_deref().unwrap_or_default(),
                env: config.env().as_deref().unwrap_or_default(),
                working_dir: config.working_dir().as_deref().unwrap_or_default(),
                user: config.user().as_deref().unwrap_or_default(),
            },
            None => Self {
                entrypoint: &[],
                cmd: &[],
                env: &[],
                working_dir: "",
                user: "",
            },
        }
    }
}

/// The process arguments by the Kubernetes rule: `command` replaces the image's entrypoint
/// and drops its cmd; `args` alone replace the cmd.
pub(crate) fn merge_args(
    command: &[String],
    args: &[String],
    image: &ImageProcess<'_>,
) -> Result<Vec<String>> {
    let merged: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        image.entrypoint.iter().chain(args).cloned().collect()
    } else {
        image.entrypoint.iter().chain(image.cmd).cloned().collect()
    };
    if merged.is_empty() {
        return Err(Error::invalid(
            "command",
            "no command given and the image has no Entrypoint or Cmd",
        ));
    }
    Ok(merged)
}

/// An ordered environment where a later `set` of a key replaces the earlier value in place.
#[derive(Default)]
pub(crate) struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    pub(crate) fn set(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
    }

    pub(crate) fn set_default(&mut self, key: &str, value: &str) {
        if !self.contains(key) {
            self.vars.push((key.to_string(), value.to_string()));
        }
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.vars.iter().any(|(k, _)| k == key)
    }

    /// Adds `KEY=value` entries; an entry without `=` is a key with an empty value.
    pub(crate) fn extend_entries(&mut self, entries: &[String]) {
        for entry in entries {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            if !key.is_empty() {
                self.set(key, value);
            }
        }
    }

    pub(crate) fn into_entries(self) -> Vec<String> {
        self.vars
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

/// The CRI `envs` as validated key/value strings.
pub(crate) fn cri_envs(envs: &[cri_api::v1::KeyValue]) -> Result<Vec<(String, String)>> {
    envs.iter()
        .enumerate()
        .map(|(i, kv)| {
            if kv.key.is_empty() || kv.key.contains('=') || kv.key.contains('\0') {
                return Err(Error::invalid(
                    format!("envs[{i}].key"),
                    format!("{:?} is not a valid variable name", kv.key),
                ));
            }
            let value = String::from_utf8(kv.value.clone()).map_err(|_| {
                Error::invalid(format!("envs[{i}].value"), "the value is not valid UTF-8")
            })?;
            if value.contains('\0') {
                return Err(Error::invalid(
                    format!("envs[{i}].value"),
                    "the value contains a NUL byte",
                ));
            }
            Ok((kv.key.clone(), value))
        })
        .collect()
}

/// The working directory: the CRI value, else the image's, else `/`.
pub(crate) fn working_dir(cri: &str, image: &ImageProcess<'_>) -> Result<String> {
    if !cri.is_empty() {
        if !cri.starts_with('/') {
            return Err(Error::invalid(
                "working_dir",
                format!("{cri:?} is not an absolute path"),
            ));
        }
        return Ok(cri.to_string());
    }
    if image.working_dir.is_empty() {
        return Ok("/".to_string());
    }
    // Docker accepts relative WORKDIRs in image configs and anchors them at `/`.
    if image.working_dir.starts_with('/') {
        Ok(image.working_dir.to_string())
    } else {
        Ok(format!("/{}", image.working_dir))
    }
}

/// The process of `spec` with other arguments and terminal setting: what `runc exec
/// --process <file>` wants for a CRI `Exec`/`ExecSync` in the container.
///
/// Everything else (user, environment, capabilities, AppArmor and SELinux labels,
/// `noNewPrivileges`, cwd) is kept, so the exec'd process is confined like the container's
/// own. With `tty`, `TERM=xterm` is added unless the environment has a `TERM`.
///
/// ```
/// use oci_spec::runtime::Spec;
///
/// let spec = Spec::default();
/// let process = cri_oci::spec::process_for_exec(&spec, &["ls".to_string(), "-l".to_string()], true).unwrap();
/// assert_eq!(process.args().as_deref(), Some(&["ls".to_string(), "-l".to_string()][..]));
/// assert_eq!(process.terminal(), Some(true));
/// ```
pub fn process_for_exec(spec: &Spec, cmd: &[String], tty: bool) -> Result<Process> {
    if cmd.is_empty() {
        return Err(Error::invalid("cmd", "the command must not be empty"));
    }
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::invalid("spec.process", "the container spec has no process"))?;
    process.set_args(Some(cmd.to_vec()));
    process.set_terminal(Some(tty));
    process.set_console_size(None);
    if tty {
        let mut env = Env::default();
        env.extend_entries(process.env().as_deref().unwrap_or_default());
        env.set_default("TERM", "xterm");
        process.set_env(Some(env.into_entries()));
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubernetes_command_rule() {
        let ep = s(&["/ep"]);
        let cmd = s(&["default"]);
        let image = ImageProcess {
            entrypoint: &ep,
            cmd: &cmd,
            env: &[],
            working_dir: "",
            user: "",
        };
        assert_eq!(
            merge_args(&[], &[], &image).unwrap(),
            s(&["/ep", "default"])
        );
        assert_eq!(
            merge_args(&[], &s(&["a"]), &image).unwrap(),
            s(&["/ep", "a"])
        );
        assert_eq!(
            merge_args(&s(&["/bin/x"]), &[], &image).unwrap(),
            s(&["/bin/x"])
        );
        assert_eq!(
            merge_args(&s(&["/bin/x"]), &s(&["a"]), &image).unwrap(),
            s(&["/bin/x", "a"])
        );
        let empty = ImageProcess {
            entrypoint: &[],
            cmd: &[],
            env: &[],
            working_dir: "",
            user: "",
        };
        assert!(
            matches!(merge_args(&[], &[], &empty), Err(Error::InvalidArgument { field, .. }) if field == "command")
        );
    }

    #[test]
    fn env_keeps_order_and_overrides_in_place() {
        let mut env = Env::default();
        env.extend_entries(&s(&["A=1", "B=2", "NOVALUE", "=bad"]));
        env.set("A", "3");
        env.set_default("B", "ignored");
        env.set_default("C", "4");
        assert_eq!(env.into_entries(), s(&["A=3", "B=2", "NOVALUE=", "C=4"]));
    }
}
