//! What "running" means inside the fake runtime: a pluggable [`Workload`] turns a container's
//! command (or an exec'd command) into a script of output, sleeps and an exit code.

use std::time::Duration;

use cri_api::v1::ContainerConfig;

/// Which stream a piece of output goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One step of a simulated process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write bytes to a stream.
    Write(Stream, Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Exit with a code (later steps are ignored). A script that runs out of steps exits 0.
    Exit(i32),
    /// Run until stopped.
    Forever,
}

/// A simulated process: its steps, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Script {
    /// A process that writes nothing and runs until stopped (a pause container).
    pub fn forever() -> Self {
        Self {
            steps: vec![Step::Forever],
        }
    }

    /// A process that prints `text` to stdout and exits with `code`.
    pub fn print_and_exit(text: impl Into<Vec<u8>>, code: i32) -> Self {
        Self {
            steps: vec![Step::Write(Stream::Stdout, text.into()), Step::Exit(code)],
        }
    }
}

/// What the fake knows about the container a command runs in.
#[derive(Clone, Copy, Debug)]
pub struct ContainerInfo<'a> {
    /// The container id.
    pub id: &'a str,
    /// The sandbox id.
    pub pod_sandbox_id: &'a str,
    /// The sandbox's hostname.
    pub hostname: &'a str,
    /// The container's config as created.
    pub config: &'a ContainerConfig,
}

/// Decides what containers and exec'd commands do in the fake runtime.
///
/// ```
/// use cri_testkit::workload::{ContainerInfo, Script, Workload};
///
/// /// Every command prints "ok".
/// struct AlwaysOk;
///
/// impl Workload for AlwaysOk {
///     fn exec(&self, _: &ContainerInfo<'_>, _cmd: &[String], _stdin: &[u8]) -> Script {
///         Script::print_and_exit("ok\n", 0)
///     }
/// }
/// ```
pub trait Workload: Send + Sync + 'static {
    /// The main process of a starting container (its `command` + `args`). Default: run the
    /// command through [`Shell`].
    fn start(&self, container: &ContainerInfo<'_>) -> Script {
        let argv: Vec<String> = container
            .config
            .command
            .iter()
            .chain(&container.config.args)
            .cloned()
            .collect();
        if argv.is_empty() {
            return Script::forever();
        }
        Shell.run(container, &argv, &[])
    }

    /// An `ExecSync` command. Default: [`Shell`].
    fn exec(&self, container: &ContainerInfo<'_>, cmd: &[String], stdin: &[u8]) -> Script {
        Shell.run(container, cmd, stdin)
    }
}

/// The default workload: a tiny simulated shell.
///
/// Commands (also inside `sh -c "a; b && c || d"`, with `>&2` to write to stderr):
/// `echo [-n] ARGS`, `cat` (prints stdin),
/// `sleep SECONDS` (fractions allowed, `infinity`), `true`, `false`, `exit N`, `env` (the
/// container's environment), `hostname`, `pwd` (the working dir). Anything else exits 127
/// with `sh: NAME: not found` on stderr. This is a simulator for testing tools that talk to
/// runtimes, not a shell.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shell;

impl Workload for Shell {}

impl Shell {
    /// Turns `argv` into a script.
    pub fn run(&self, container: &ContainerInfo<'_>, argv: &[String], stdin: &[u8]) -> Script {
        let mut steps = Vec::new();
        let status = self.command(container, argv, stdin, &mut steps);
        if !matches!(steps.last(), Some(Step::Exit(_) | Step::Forever)) {
            steps.push(Step::Exit(status));
        }
        Script { steps }
    }

    /// Runs one command, appending its steps; returns its exit status.
    fn command(
        &self,
        container: &ContainerInfo<'_>,
        argv: &[String],
        stdin: &[u8],
        steps: &mut Vec<Step>,
    ) -> i32 {
        // `>&2` (or `1>&2`) anywhere sends this command's output to stderr.
        let to_stderr = argv.iter().any(|a| a == ">&2" || a == "1>&2");
        let argv: Vec<String> = argv
            .iter()
            .filter(|a| *a != ">&2" && *a != "1>&2")
            .cloned()
            .collect();
        let first = steps.len();
        let status = self.builtin(container, &argv, stdin, steps);
        if to_stderr {
            for step in &mut steps[first..] {
                if let Step::Write(stream @ Stream::Stdout, _) = step {
                    *stream = Stream::Stderr;
                }
            }
        }
        status
    }

    fn builtin(
        &self,
        container: &ContainerInfo<'_>,
        argv: &[String],
        stdin: &[u8],
        steps: &mut Vec<Step>,
    ) -> i32 {
        let Some((name, args)) = argv.split_first() else {
            return 0;
        };
        let name = name.rsplit('/').next().unwrap_or(name);
        match name {
            "sh" | "bash" | "ash" if args.first().map(String::as_str) == Some("-c") => {
                let script = args.get(1).map(String::as_str).unwrap_or("");
                self.script(container, script, stdin, steps)
            }
            "echo" => {
                let (newline, words) = match args.first().map(String::as_str) {
                    Some("-n") => (false, &args[1..]),
                    _ => (true, args),
                };
                let mut text = words.join(" ").into_bytes();
                if newline {
                    text.push(b'\n');
                }
                steps.push(Step::Write(Stream::Stdout, text));
                0
            }
            "cat" if args.is_empty() => {
                if !stdin.is_empty() {
                    steps.push(Step::Write(Stream::Stdout, stdin.to_vec()));
                }
                0
            }
            "sleep" => match args.first().map(String::as_str) {
                Some("infinity") => {
                    steps.push(Step::Forever);
                    0
                }
                Some(secs) => match secs.parse::<f64>() {
                    Ok(secs) if secs >= 0.0 && secs.is_finite() => {
                        steps.push(Step::Sleep(Duration::from_secs_f64(secs)));
                        0
                    }
                    _ => {
                        steps.push(Step::Write(
                            Stream::Stderr,
                            format!("sleep: invalid number '{secs}'\n").into_bytes(),
                        ));
                        1
                    }
                },
                None => {
                    steps.push(Step::Write(
                        Stream::Stderr,
                        b"sleep: missing operand\n".to_vec(),
                    ));
                    1
                }
            },
            "true" => 0,
            "false" => 1,
            "exit" => {
                let code = args.first().and_then(|c| c.parse().ok()).unwrap_or(0);
                steps.push(Step::Exit(code));
                code
            }
            "env" => {
                let mut text = Vec::new();
                for kv in &container.config.envs {
                    text.extend_from_slice(kv.key.as_bytes());
                    text.push(b'=');
                    text.extend_from_slice(&kv.value);
                    text.push(b'\n');
                }
                steps.push(Step::Write(Stream::Stdout, text));
                0
            }
            "hostname" => {
                steps.push(Step::Write(
                    Stream::Stdout,
                    format!("{}\n", container.hostname).into_bytes(),
                ));
                0
            }
            "pwd" => {
                let dir = if container.config.working_dir.is_empty() {
                    "/"
                } else {
                    &container.config.working_dir
                };
                steps.push(Step::Write(Stream::Stdout, format!("{dir}\n").into_bytes()));
                0
            }
            other => {
                steps.push(Step::Write(
                    Stream::Stderr,
                    format!("sh: {other}: not found\n").into_bytes(),
                ));
                127
            }
        }
    }

    /// `a; b && c || d`: sequences and short-circuits, with single/double quotes.
    fn script(
        &self,
        container: &ContainerInfo<'_>,
        script: &str,
        stdin: &[u8],
        steps: &mut Vec<Step>,
    ) -> i32 {
        let mut status = 0;
        let mut skip = false;
        for (words, op) in split_script(script) {
            if !skip && !words.is_empty() {
                status = self.command(container, &words, stdin, steps);
                if matches!(steps.last(), Some(Step::Exit(_) | Step::Forever)) {
                    return status;
                }
            }
            skip = match op {
                Op::And => status != 0,
                Op::Or => status == 0,
                Op::Seq => false,
            };
        }
        status
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Seq,
    And,
    Or,
}

/// Splits a script into commands (words) and the operator after each.
fn split_script(script: &str) -> Vec<(Vec<String>, Op)> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, ';' | '\n') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                out.push((std::mem::take(&mut words), Op::Seq));
            }
            (None, '&') if chars.peek() == Some(&'&') => {
                chars.next();
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                out.push((std::mem::take(&mut words), Op::And));
            }
            (None, '|') if chars.peek() == Some(&'|') => {
                chars.next();
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                out.push((std::mem::take(&mut words), Op::Or));
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    out.push((words, Op::Seq));
    out
}

#[cfg(test)]
mod tests {
    use cri_api::v1::KeyValue;

    use super::*;

    fn info(config: &ContainerConfig) -> ContainerInfo<'_> {
        ContainerInfo {
            id: "c1",
            pod_sandbox_id: "p1",
            hostname: "pod-host",
            config,
        }
    }

    fn run(argv: &[&str]) -> Script {
        let config = ContainerConfig {
            envs: vec![KeyValue {
                key: "A".into(),
                value: b"1".to_vec(),
            }],
            ..Default::default()
        };
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        Shell.run(&info(&config), &argv, b"from stdin")
    }

    fn out(text: &str) -> Step {
        Step::Write(Stream::Stdout, text.as_bytes().to_vec())
    }

    #[test]
    fn builtins() {
        assert_eq!(
            run(&["echo", "hello", "world"]).steps,
            [out("hello world\n"), Step::Exit(0)]
        );
        assert_eq!(run(&["echo", "-n", "x"]).steps, [out("x"), Step::Exit(0)]);
        assert_eq!(run(&["cat"]).steps, [out("from stdin"), Step::Exit(0)]);
        assert_eq!(run(&["false"]).steps, [Step::Exit(1)]);
        assert_eq!(run(&["/bin/true"]).steps, [Step::Exit(0)]);
        assert_eq!(run(&["env"]).steps, [out("A=1\n"), Step::Exit(0)]);
        assert_eq!(run(&["hostname"]).steps, [out("pod-host\n"), Step::Exit(0)]);
        assert_eq!(run(&["sleep", "infinity"]).steps, [Step::Forever]);
        assert_eq!(
            run(&["sleep", "0.5"]).steps,
            [Step::Sleep(Duration::from_millis(500)), Step::Exit(0)]
        );
        assert_eq!(
            run(&["nope"]).steps,
            [
                Step::Write(Stream::Stderr, b"sh: nope: not found\n".to_vec()),
                Step::Exit(127)
            ]
        );
    }

    #[test]
    fn sh_c_sequences_and_short_circuits() {
        assert_eq!(
            run(&["sh", "-c", "echo 'a b'; exit 3; echo never"]).steps,
            [out("a b\n"), Step::Exit(3)]
        );
        assert_eq!(
            run(&["sh", "-c", "false && echo no || echo yes"]).steps,
            [out("yes\n"), Step::Exit(0)]
        );
        assert_eq!(
            run(&["sh", "-c", "echo start && sleep 1 && echo end"]).steps,
            [
                out("start\n"),
                Step::Sleep(Duration::from_secs(1)),
                out("end\n"),
                Step::Exit(0)
            ]
        );
        assert_eq!(
            run(&["sh", "-c", "echo \"q;uoted\""]).steps,
            [out("q;uoted\n"), Step::Exit(0)]
        );
    }

    #[test]
    fn empty_command_runs_forever() {
        let config = ContainerConfig::default();
        assert_eq!(Shell.start(&info(&config)), Script::forever());
    }
}
