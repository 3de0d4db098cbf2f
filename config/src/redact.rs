//! Secret redaction for anything the control API shows: the TOML text and the JSON model.
//!
//! Redaction is by key name, in one place, so a new secret field is covered by adding its
//! key to [`SECRET_KEYS`].

mod keys;
mod restore;

pub use keys::{REDACTED, SECRET_KEYS};
pub use restore::restore_redacted;

use toml_edit::{DocumentMut, Item, Value};

/// The TOML text with every secret value replaced, comments and layout kept. Text that does
/// not parse is not shown at all.
pub fn redact_toml(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return "# (config text could not be parsed for redaction)\n".to_string();
    };
    redact_table_like(doc.as_table_mut() as &mut dyn toml_edit::TableLike);
    doc.to_string()
}

fn redact_table_like(t: &mut dyn toml_edit::TableLike) {
    for (key, item) in t.iter_mut() {
        if SECRET_KEYS.contains(&key.get()) {
            if let Some(v) = item.as_value_mut() {
                let decor = v.decor().clone();
                *v = Value::from(REDACTED);
                *v.decor_mut() = decor;
            }
            continue;
        }
        redact_item(item);
    }
}

fn redact_item(item: &mut Item) {
    match item {
        Item::Table(t) => redact_table_like(t),
        Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| redact_table_like(t)),
        Item::Value(v) => redact_value(v),
        Item::None => {}
    }
}

fn redact_value(v: &mut Value) {
    match v {
        Value::InlineTable(t) => redact_table_like(t),
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        _ => {}
    }
}

/// The JSON form of a config with every secret replaced. Environment variable references
/// (`{ "env": "NAME" }`, see [`crate::model::Secret`]) are names, not secrets, and stay
/// visible.
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let is_env = val.as_object().is_some_and(|m| {
                    m.len() == 1 && m.get("env").is_some_and(serde_json::Value::is_string)
                });
                if SECRET_KEYS.contains(&k.as_str()) && !val.is_null() && !is_env {
                    *val = serde_json::Value::from(REDACTED);
                } else {
                    redact_json(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_secrets_are_replaced_and_comments_kept() {
        let text = "# top\n[[control.tokens]]\nname = \"ops\" # who\nsha256 = \"abcd\"\n[[postgres.clusters]]\nusers = [{ name = \"app\", password = \"hunter2\" }]\n";
        let out = redact_toml(text);
        assert!(!out.contains("abcd"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("# top") && out.contains("# who"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 2, "{out}");
    }

    #[test]
    fn json_secrets_are_replaced_env_names_kept() {
        let mut v = serde_json::json!({"a": {"password": "x", "sha256": "y"}, "b": [{"password": {"env": "PW"}}]});
        redact_json(&mut v);
        assert_eq!(v["a"]["password"], REDACTED);
        assert_eq!(v["a"]["sha256"], REDACTED);
        assert_eq!(v["b"][0]["password"]["env"], "PW");
    }

    #[test]
    fn get_edit_put_keeps_secrets() {
        let current = "# c\n[[control.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"aa\"\n[[postgres.clusters]]\nusers = [{ name = \"app\", password = \"pw\" }]\n";
        let edited = redact_toml(current).replace("admin", "operator");
        let restored = restore_redacted(&edited, current);
        assert!(restored.contains("sha256 = \"aa\""), "{restored}");
        assert!(restored.contains("password = \"pw\""), "{restored}");
        assert!(
            restored.contains("role = \"operator\"") && restored.contains("# c"),
            "{restored}"
        );
    }
}
