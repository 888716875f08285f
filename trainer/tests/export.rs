//! `trainer export-hf`: the directory's files, a reload that gives our logits back, and the
//! parity check in Python `transformers` (from the project venv, which CI installs).

use std::path::{Path, PathBuf};

use format::{ChatTemplate, Message, Role};
use tch::{Device, Tensor};
use trainer::engine::config::Precision;
use trainer::io::checkpoint::Checkpoint;
use trainer::io::hf::load_hf;
use trainer::model::language_model::LanguageModel;
use trainer::model::tokenizer::TextTokenizer;

use testkit::python::run_python;

use crate::helpers::{datasets, tiny_config_file, trainer_ok};

/// Trains `steps` steps of the tiny model (optionally tied) and exports the last checkpoint.
fn trained_export(root: &Path, name: &str, tied: bool, steps: u64) -> (PathBuf, PathBuf) {
    let out = root.join(name);
    let config = tiny_config_file(root, name, &out, steps);
    if tied {
        let text = std::fs::read_to_string(&config).expect("config");
        std::fs::write(
            &config,
            text.replace("[model]\n", "[model]\ntie_word_embeddings = true\n"),
        )
        .expect("write");
    }
    trainer_ok(&["pretrain", "--config", config.to_str().expect("utf8")]);
    let ckpt = out.join(format!("checkpoints/step-{steps:08}"));
    let hf = root.join(format!("{name}-hf"));
    trainer_ok(&[
        "export-hf",
        ckpt.to_str().expect("utf8"),
        hf.to_str().expect("utf8"),
    ]);
    (ckpt, hf)
}

fn ids() -> Tensor {
    Tensor::from_slice(&[0i64, 17, 42, 99, 5, 250, 7, 8, 300, 12, 1, 2]).view([1, 12])
}

fn safetensors_header(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).expect("safetensors");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    serde_json::from_slice(&bytes[8..8 + len]).expect("header json")
}

#[test]
fn the_export_reloads_to_the_same_logits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    for tied in [false, true] {
        let (ckpt, hf) = trained_export(tmp.path(), if tied { "tied" } else { "untied" }, tied, 3);
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            assert!(hf.join(file).is_file(), "{file} missing");
        }
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hf.join("config.json")).expect("config"))
                .expect("json");
        assert_eq!(config["architectures"][0], "LlamaForCausalLM");
        assert_eq!(config["num_key_value_heads"], 2);
        assert_eq!(config["tie_word_embeddings"], tied);
        let header = safetensors_header(&hf.join("model.safetensors"));
        assert_eq!(header["__metadata__"]["format"], "pt");
        assert_eq!(
            header["model.layers.1.self_attn.k_proj.weight"]["shape"],
            serde_json::json!([16, 32])
        );
        assert_eq!(header.get("lm_head.weight").is_some(), !tied);
        let tok_config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hf.join("tokenizer_config.json")).expect("tc"))
                .expect("json");
        assert_eq!(
            tok_config["chat_template"],
            format::chat_template_jinja(true)
        );
        assert_eq!(tok_config["eos_token"], "<|endoftext|>");
        // Llama-style BOS: its own token, added by the tokenizer and the chat template.
        assert_eq!(tok_config["bos_token"], format::BOS_TOKEN);
        assert_eq!(tok_config["add_bos_token"], true);
        assert_eq!(config["bos_token_id"], 5);
        let generation: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hf.join("generation_config.json")).expect("gc"))
                .expect("json");
        assert_eq!(
            generation["eos_token_id"],
            serde_json::json!([0, 4]),
            "generation stops at <|endoftext|> and at the end of a turn"
        );
        assert_eq!(generation["bos_token_id"], 5);

        let ours = LanguageModel::from_checkpoint(
            &Checkpoint::load(&ckpt).expect("checkpoint"),
            Device::Cpu,
            Precision::Fp32,
        )
        .expect("model");
        let back = load_hf(&hf, Device::Cpu, Precision::Fp32).expect("reload");
        let (a, b) = (
            ours.forward(&ids(), 0, None).expect("a"),
            back.forward(&ids(), 0, None).expect("b"),
        );
        assert!(a.equal(&b), "tied={tied}: reloaded logits differ");

        // `generate` reads either directory and gives the same greedy text.
        let greedy = |dir: &Path| {
            trainer_ok(&[
                "generate",
                dir.to_str().expect("utf8"),
                "--prompt",
                "a dog",
                "--temperature",
                "0",
                "--max-tokens",
                "12",
                "--device",
                "cpu",
                "--json",
            ])
        };
        assert_eq!(greedy(&ckpt), greedy(&hf), "tied={tied}");
    }
}

const PARITY_SCRIPT: &str = r#"
import json, sys
import torch
try:
    from transformers import AutoModelForCausalLM, AutoTokenizer
except ImportError as e:
    sys.exit(f"transformers is not installed in this venv ({e}): pip install -r scripts/requirements.txt")
ids = json.loads(sys.argv[2])
messages = json.loads(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
model.eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0]
tok = AutoTokenizer.from_pretrained(sys.argv[1])
chat = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=False)
if isinstance(chat, dict) or hasattr(chat, "input_ids"):
    chat = chat["input_ids"]
print(json.dumps({
    "class": type(model).__name__,
    "logits": logits.tolist(),
    "encoded": tok.encode("the cat sees a dog.", add_special_tokens=False),
    "with_specials": tok("the cat sees a dog.")["input_ids"],
    "prompt": list(tok.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]),
    "chat": list(chat),
}))
"#;

#[test]
fn transformers_loads_the_export_and_its_logits_match_ours() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let messages = vec![
        Message::new(Role::User, "the cat sees"),
        Message::new(Role::Assistant, "a dog."),
    ];
    for tied in [false, true] {
        let (ckpt, hf) = trained_export(tmp.path(), if tied { "tied" } else { "untied" }, tied, 5);
        let ours = LanguageModel::from_checkpoint(
            &Checkpoint::load(&ckpt).expect("checkpoint"),
            Device::Cpu,
            Precision::Fp32,
        )
        .expect("model");
        let logits = ours
            .forward(&ids(), 0, None)
            .expect("logits")
            .squeeze_dim(0);
        let id_list: Vec<i64> = Vec::try_from(ids().view([-1])).expect("ids");
        let out = run_python(
            PARITY_SCRIPT,
            &[
                hf.as_os_str().to_owned(),
                serde_json::to_string(&id_list).expect("json").into(),
                serde_json::to_string(&messages).expect("json").into(),
            ],
        );
        let theirs: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(theirs["class"], "LlamaForCausalLM");
        let rows: Vec<Vec<f32>> = serde_json::from_value(theirs["logits"].clone()).expect("rows");
        let flat: Vec<f32> = rows.concat();
        let theirs_t = Tensor::from_slice(&flat).view([12, -1]);
        assert_eq!(theirs_t.size(), logits.size());
        let diff = f64::try_from((&logits - &theirs_t).abs().max()).expect("diff");
        eprintln!("tied={tied}: max |logit difference| vs transformers = {diff:e}");
        assert!(diff < 1e-4, "tied={tied}: max |logit difference| = {diff}");

        let tokenizer = TextTokenizer::from_file(&hf.join("tokenizer.json")).expect("tokenizer");
        let encoded: Vec<u32> = serde_json::from_value(theirs["encoded"].clone()).expect("ids");
        assert_eq!(
            encoded,
            tokenizer.encode("the cat sees a dog.").expect("encode")
        );
        let state = Checkpoint::load(&ckpt).expect("checkpoint").state;
        let template =
            ChatTemplate::from_special_tokens(&state.tokenizer.special_tokens).expect("template");
        let rendered = template.render(&messages, &tokenizer).expect("render");
        let chat: Vec<u32> = serde_json::from_value(theirs["chat"].clone()).expect("chat ids");
        assert_eq!(
            chat, rendered.input_ids,
            "apply_chat_template vs format's template"
        );
        // BOS once, first: as every training document and example starts.
        let bos = state.tokenizer.bos().expect("the tokenizer has BOS");
        assert_eq!(chat.iter().filter(|&&t| t == bos).count(), 1);
        assert_eq!(chat[0], bos);
        let with_specials: Vec<u32> =
            serde_json::from_value(theirs["with_specials"].clone()).expect("ids");
        assert_eq!(
            with_specials,
            [vec![bos], encoded.clone()].concat(),
            "tokenizer(text) adds BOS as our generate does"
        );
        let prompt: Vec<u32> = serde_json::from_value(theirs["prompt"].clone()).expect("ids");
        assert_eq!(
            prompt,
            template
                .render_prompt(&messages[..1], &tokenizer)
                .expect("prompt"),
            "a generation prompt from apply_chat_template"
        );
    }
}
