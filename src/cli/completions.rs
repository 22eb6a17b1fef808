//! `minikafka completions bash|zsh|fish`: prints a shell completion script generated from the
//! clap command tree, so it always matches the binary's commands and flags.

use std::io::Write;

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::{Cli, CliError};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    shell: CompletionShell,
}

pub(super) fn run(args: CompletionsArgs) -> Result<(), CliError> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "minikafka", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).map_err(CliError::stdout)?;
    out.flush().map_err(CliError::stdout)
}
