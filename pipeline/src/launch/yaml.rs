//! A small YAML writer for Kubernetes manifests: block style for maps and lists, every string
//! as a JSON-quoted scalar (valid YAML, so no value is ever read back as another type: "3",
//! "true", "no" and text with `:` or `#` stay strings).

use serde_json::Value;

/// `value` as one YAML document.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => write_list(items, 0, &mut out),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// Several documents separated by `---`, for `kubectl apply -f -`.
pub fn documents(values: &[Value]) -> String {
    values.iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}

fn write_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (key, value) in map {
        let key = plain_or_quoted(key);
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                write_map(m, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                write_list(items, indent + 2, out);
            }
            scalar => out.push_str(&format!("{pad}{key}: {}\n", inline(scalar))),
        }
    }
}

fn write_list(items: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The item's first line starts after "- ": write it two deeper, then put the
                // dash into the first line's indentation.
                let mut nested = String::new();
                write_map(m, indent + 2, &mut nested);
                out.push_str(&format!("{pad}- {}", &nested[indent + 2..]));
            }
            Value::Array(inner) if !inner.is_empty() => {
                let mut nested = String::new();
                write_list(inner, indent + 2, &mut nested);
                out.push_str(&format!("{pad}- {}", &nested[indent + 2..]));
            }
            scalar => out.push_str(&format!("{pad}- {}\n", inline(scalar))),
        }
    }
}

/// A scalar, an empty map or an empty list on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

/// Keys such as `app.kubernetes.io/name` stay plain; anything else is quoted.
fn plain_or_quoted(key: &str) -> String {
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = !WORDS.contains(&key.to_ascii_lowercase().as_str())
        && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
    if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}
