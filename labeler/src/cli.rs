//! The administrative commands behind `labeler user|token|project|import|export`, as library
//! functions so `main.rs` stays thin and tests can call them.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sqlx::PgPool;

use crate::domain::{Aspects, Overlap, Password, ProjectKind, ProjectName, Role, Username};
use crate::store::StoreError;
use crate::store::accounts;
use crate::store::audit::{self, Action, Actor, Event};
use crate::store::export::{self, ExportPart};
use crate::store::import;
use crate::store::projects::{self, NewProject};

/// Reads a password from `LABELER_PASSWORD` or, failing that, the first line of stdin.
pub fn read_password() -> Result<Password> {
    let raw = match std::env::var("LABELER_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s.lines().next().unwrap_or_default().to_string()
        }
    };
    Password::parse(raw).map_err(anyhow::Error::msg)
}

pub async fn user_add(pool: &PgPool, name: &str, role: &str, password: Password) -> Result<()> {
    let name = Username::parse(name).map_err(anyhow::Error::msg)?;
    let role = Role::parse(role).map_err(anyhow::Error::msg)?;
    accounts::add_user(pool, &name, &password, role).await?;
    let event = Event::new(Action::UserAdd)
        .target(name.as_str())
        .details(serde_json::json!({"role": role.as_str()}));
    audit::record(pool, &Actor::cli(), event).await?;
    println!("added {} {name}", role.as_str());
    Ok(())
}

pub async fn user_list(pool: &PgPool) -> Result<()> {
    println!(
        "{:>5}  {:<24} {:<10} {:<8} created",
        "id", "name", "role", "status"
    );
    for u in accounts::list_users(pool).await? {
        let status = if u.disabled { "disabled" } else { "active" };
        println!(
            "{:>5}  {:<24} {:<10} {:<8} {}",
            u.id,
            u.username,
            u.role,
            status,
            u.created_at.format("%Y-%m-%d %H:%M")
        );
    }
    Ok(())
}

pub async fn user_set_disabled(pool: &PgPool, name: &str, disabled: bool) -> Result<()> {
    let name = Username::parse(name).map_err(anyhow::Error::msg)?;
    accounts::set_disabled(pool, &name, disabled).await?;
    let action = if disabled {
        Action::UserDisable
    } else {
        Action::UserEnable
    };
    audit::record(
        pool,
        &Actor::cli(),
        Event::new(action).target(name.as_str()),
    )
    .await?;
    println!("{} {name}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}

/// Sets a user's password; their browser sessions end (API tokens are left as they are).
pub async fn user_set_password(pool: &PgPool, name: &str, password: Password) -> Result<()> {
    let name = Username::parse(name).map_err(anyhow::Error::msg)?;
    accounts::set_password(pool, &name, &password).await?;
    let event = Event::new(Action::UserPassword).target(name.as_str());
    audit::record(pool, &Actor::cli(), event).await?;
    println!("password changed for {name}; their sessions have ended");
    Ok(())
}

pub async fn token_create(pool: &PgPool, name: &str, label: &str) -> Result<()> {
    let name = Username::parse(name).map_err(anyhow::Error::msg)?;
    let token = accounts::create_token(pool, &name, label).await?;
    let event = Event::new(Action::TokenCreate)
        .target(name.as_str())
        .details(serde_json::json!({"name": label}));
    audit::record(pool, &Actor::cli(), event).await?;
    println!("{token}");
    Ok(())
}

/// The flags of `labeler project create`.
#[derive(Debug, clap::Args)]
pub struct ProjectCreateFlags {
    pub name: String,
    #[arg(long, value_parser = ["sft", "preference", "rating"])]
    pub kind: String,
    /// How many distinct annotators answer each item.
    #[arg(long, default_value_t = 1)]
    pub overlap: i64,
    /// Markdown file with the guidelines.
    #[arg(long)]
    pub guidelines: Option<PathBuf>,
    /// Preference projects: annotators must explain their choice.
    #[arg(long)]
    pub rationale_required: bool,
    /// Rating projects: an aspect scored 1-5, as `name=guideline` (repeat the flag).
    #[arg(long = "aspect")]
    pub aspects: Vec<String>,
    /// Preference projects: annotators rank all of an item's candidates (2-9).
    #[arg(long)]
    pub ranking: bool,
}

impl ProjectCreateFlags {
    pub fn args(&self) -> ProjectArgs<'_> {
        ProjectArgs {
            name: &self.name,
            kind: &self.kind,
            overlap: self.overlap,
            guidelines: self.guidelines.as_deref(),
            rationale_required: self.rationale_required,
            aspects: &self.aspects,
            ranking: self.ranking,
        }
    }
}

#[derive(Debug)]
pub struct ProjectArgs<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub overlap: i64,
    pub guidelines: Option<&'a Path>,
    pub rationale_required: bool,
    /// Rating projects: `name=guideline` per aspect scored 1-5.
    pub aspects: &'a [String],
    /// Preference projects: rank all candidates (2-9) instead of comparing two.
    pub ranking: bool,
}

pub async fn project_create(pool: &PgPool, args: ProjectArgs<'_>) -> Result<()> {
    let guidelines = match args.guidelines {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading guidelines {}", p.display()))?,
        None => String::new(),
    };
    let new = NewProject {
        name: ProjectName::parse(args.name).map_err(anyhow::Error::msg)?,
        kind: ProjectKind::parse(args.kind).map_err(anyhow::Error::msg)?,
        overlap: Overlap::parse(args.overlap).map_err(anyhow::Error::msg)?,
        guidelines,
        rationale_required: args.rationale_required,
        aspects: Aspects::parse_flags(args.aspects).map_err(anyhow::Error::msg)?,
        ranking: args.ranking,
    };
    let p = projects::create(pool, &new, None).await?;
    let event = Event::new(Action::ProjectCreate)
        .project(p.id)
        .target(&p.name)
        .details(serde_json::json!({"kind": p.kind.as_str(), "overlap": p.overlap}));
    audit::record(pool, &Actor::cli(), event).await?;
    println!(
        "created {} project {} (id {})",
        p.kind.as_str(),
        p.name,
        p.id
    );
    Ok(())
}

pub async fn import_file(pool: &PgPool, project: &str, file: &Path) -> Result<()> {
    let project = projects::by_name(pool, project).await?;
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let started = std::time::Instant::now();
    let items = match import::parse_upload(&data, import::ItemRules::of(&project)) {
        Ok(items) => items,
        Err(errors) => {
            for e in errors.iter().take(import::MAX_REPORTED_ERRORS) {
                eprintln!("{}:{}: {}", file.display(), e.line, e.message);
            }
            bail!(
                "{} bad row(s) in {}; nothing was imported",
                errors.len(),
                file.display()
            );
        }
    };
    let source = file.display().to_string();
    match import::insert(pool, &project, &source, &items, None).await {
        Ok(s) => {
            let event = Event::new(Action::ProjectImport)
                .project(project.id)
                .target(&source)
                .details(serde_json::json!({"import_id": s.import_id, "items": s.items}));
            audit::record(pool, &Actor::cli(), event).await?;
            println!(
                "imported {} item(s) into {} in {:.2}s (import {})",
                s.items,
                project.name,
                started.elapsed().as_secs_f64(),
                s.import_id
            );
            Ok(())
        }
        Err(StoreError::Rows { message, errors }) => {
            for e in &errors {
                eprintln!("{}:{}: {}", file.display(), e.line, e.message);
            }
            bail!(message)
        }
        Err(e) => Err(anyhow::Error::new(e)),
    }
}

/// The file format of `labeler export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Parquet,
}

/// Writes every part of the project's export into `out_dir` as `<project>-<part>.jsonl`
/// (or `.parquet`).
pub async fn export_project(
    pool: &PgPool,
    project: &str,
    out_dir: &Path,
    format: ExportFormat,
) -> Result<Vec<PathBuf>> {
    export_project_with(pool, project, out_dir, format, false).await
}

/// [`export_project`], optionally limited to responses a reviewer accepted.
pub async fn export_project_with(
    pool: &PgPool,
    project: &str,
    out_dir: &Path,
    format: ExportFormat,
    accepted_only: bool,
) -> Result<Vec<PathBuf>> {
    let project = projects::by_name(pool, project).await?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut written = Vec::new();
    let by = Actor::cli();
    for &part in ExportPart::for_project(&project) {
        let n;
        let path;
        match format {
            ExportFormat::Jsonl => {
                path = out_dir.join(format!("{}-{}.jsonl", project.name, part.as_str()));
                n = export::write_jsonl(pool, &project, part, accepted_only, &path).await?;
            }
            ExportFormat::Parquet => {
                path = out_dir.join(format!("{}-{}.parquet", project.name, part.as_str()));
                n = export::parquet::write(pool, &project, part, accepted_only, &path).await?;
            }
        }
        println!("{}: {n} record(s)", path.display());
        let hook = crate::store::webhooks::ExportEvent {
            part: part.as_str(),
            format: match format {
                ExportFormat::Jsonl => "jsonl",
                ExportFormat::Parquet => "parquet",
            },
            accepted_only,
            by: by.name(),
        };
        // Like an API export: an audit row (which also ends undo of the answers in it, see
        // store::annotator) and the webhook event, which the running server's deliverer sends.
        let event = Event::new(Action::ProjectExport)
            .project(project.id)
            .target(part.as_str())
            .details(serde_json::json!({"format": hook.format, "accepted_only": accepted_only}));
        audit::record(pool, &by, event).await?;
        crate::store::webhooks::enqueue_export(pool, project.id, &hook).await?;
        written.push(path);
    }
    Ok(written)
}
