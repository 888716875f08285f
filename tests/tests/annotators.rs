//! The stand-in annotators (`scripts/annotate_demo.py`) in a log: with stderr not a
//! terminal they write one progress line per project and a summary, no carriage returns
//! (a progress line rewritten in place is for terminals only).

use jielong_tests::{LabelerSetup, serve, workspace_root};

use crate::demo_files::annotate_demo_with_stderr;

#[test]
fn stand_in_annotators_write_one_line_per_project_to_a_log() {
    let labeler = LabelerSetup::new("towns-answers", "towns-compare");
    let prompts = workspace_root().join("data/demo/prompts.jsonl");
    let prompts = prompts.to_str().expect("utf8");
    labeler.cli(&["import", "--project", "towns-answers", prompts]);
    let server = serve(&labeler.database_url);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (actions, stderr) = annotate_demo_with_stderr(
        &[
            "--labeler",
            server.address.as_str(),
            "--token",
            &labeler.annotator_token,
            "--sft-project",
            &labeler.sft_project,
            "--compare-project",
            &labeler.preference_project,
            "--prompts",
            prompts,
        ],
        &tmp.path().join("actions.json"),
    );
    let actions = actions.as_array().expect("actions");
    let answered = actions.iter().filter(|a| a["action"] == "answer").count();
    assert_eq!(answered, 42, "48 prompts, every 8th skipped");
    assert!(!stderr.contains('\r'), "{stderr:?}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "  sft: 42 labelled",
            "  preference: 0 labelled",
            "labelled: answer 42, skip 6",
        ],
        "{stderr:?}"
    );
}
