//! `labeler`: command-line entry point; parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use labeler::{Application, Settings, cli, startup};

/// The jielong labeling web app (actix-web + PostgreSQL).
#[derive(Debug, Parser)]
#[command(name = "labeler", version)]
struct Cli {
    /// Settings file; LABELER_HOST, LABELER_PORT, LABELER_SESSION_KEY and DATABASE_URL
    /// override it.
    #[arg(
        long,
        global = true,
        default_value = "configs/labeler.toml",
        env = "LABELER_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations, then serve HTTP until interrupted.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Import items from a JSONL or Parquet file into a project (all rows or none).
    Import {
        #[arg(long)]
        project: String,
        file: PathBuf,
    },
    /// Export a project's responses as JSONL or Parquet (SFT: one file; preference: pairs and
    /// ties).
    Export {
        #[arg(long)]
        project: String,
        /// Directory for `<project>-<part>.jsonl` (or `.parquet`).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// jsonl, or parquet (the same fields; `meta` as a JSON string).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "parquet"])]
        format: String,
        /// Only responses a reviewer accepted (rejected ones are never exported).
        #[arg(long)]
        accepted_only: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password comes from LABELER_PASSWORD or stdin.
    Add {
        name: String,
        #[arg(long, default_value = "annotator", value_parser = ["admin", "reviewer", "annotator"])]
        role: String,
    },
    /// List users.
    List,
    /// Disable a user: their sessions and tokens stop working.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Set a user's password (LABELER_PASSWORD or stdin); their sessions end.
    Password { name: String },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token for a user and print it (it is shown only once).
    Create {
        user: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Create a project.
    Create(cli::ProjectCreateFlags),
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let settings = Settings::load(&cli.config)?;
    if let Command::Serve = cli.command {
        let app = Application::build(settings.clone()).await?;
        tracing::info!(
            "labeler listening on http://{}:{}",
            settings.server.host,
            app.port()
        );
        app.run_until_stopped().await?;
        return Ok(());
    }
    let pool = startup::connect(&settings)?;
    startup::migrate(&pool).await?;
    match cli.command {
        Command::Serve => {}
        Command::Migrate => {
            let applied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&pool)
                    .await?;
            println!("database is up to date ({applied} migration(s) applied)");
        }
        Command::User(UserCommand::Add { name, role }) => {
            cli::user_add(&pool, &name, &role, cli::read_password()?).await?;
        }
        Command::User(UserCommand::List) => cli::user_list(&pool).await?,
        Command::User(UserCommand::Disable { name }) => {
            cli::user_set_disabled(&pool, &name, true).await?;
        }
        Command::User(UserCommand::Enable { name }) => {
            cli::user_set_disabled(&pool, &name, false).await?;
        }
        Command::User(UserCommand::Password { name }) => {
            cli::user_set_password(&pool, &name, cli::read_password()?).await?;
        }
        Command::Token(TokenCommand::Create { user, name }) => {
            cli::token_create(&pool, &user, &name).await?;
        }
        Command::Project(ProjectCommand::Create(flags)) => {
            cli::project_create(&pool, flags.args()).await?;
        }
        Command::Import { project, file } => cli::import_file(&pool, &project, &file).await?,
        Command::Export {
            project,
            out,
            format,
            accepted_only,
        } => {
            let format = if format == "parquet" {
                cli::ExportFormat::Parquet
            } else {
                cli::ExportFormat::Jsonl
            };
            cli::export_project_with(&pool, &project, &out, format, accepted_only).await?;
        }
    }
    Ok(())
}
