//! Putting secrets back: a config fetched from `GET /v1/config` has every secret replaced by
//! [`REDACTED`]; when it is sent back with `PUT`, each such value is restored from the running
//! config at the same key path, so "get, edit, put" works without re-entering secrets.

use toml_edit::{DocumentMut, Item, Value};

use super::keys::{REDACTED, SECRET_KEYS};

/// `text` with every `<redacted>` secret replaced by the value at the same key path in
/// `current`. Values with no counterpart stay `<redacted>` (validation then names them).
/// Text that does not parse is returned unchanged, for validation to report.
pub fn restore_redacted(text: &str, current: &str) -> String {
    if !text.contains(REDACTED) {
        return text.to_string();
    }
    let (Ok(mut doc), Ok(cur)) = (text.parse::<DocumentMut>(), current.parse::<DocumentMut>())
    else {
        return text.to_string();
    };
    restore_table(doc.as_table_mut(), Some(cur.as_table()));
    doc.to_string()
}

fn restore_table(t: &mut dyn toml_edit::TableLike, cur: Option<&dyn toml_edit::TableLike>) {
    for (key, item) in t.iter_mut() {
        let counterpart = cur.and_then(|c| c.get(key.get()));
        if SECRET_KEYS.contains(&key.get()) {
            let redacted = item.as_value().and_then(Value::as_str) == Some(REDACTED);
            if let (true, Some(Item::Value(old))) = (redacted, counterpart) {
                if let Some(v) = item.as_value_mut() {
                    let decor = v.decor().clone();
                    *v = old.clone();
                    *v.decor_mut() = decor;
                }
            }
            continue;
        }
        restore_item(item, counterpart);
    }
}

fn restore_item(item: &mut Item, cur: Option<&Item>) {
    match item {
        Item::Table(t) => restore_table(t, cur.and_then(Item::as_table_like)),
        Item::ArrayOfTables(a) => {
            let cur = cur.and_then(Item::as_array_of_tables);
            for (i, t) in a.iter_mut().enumerate() {
                let c = cur.and_then(|c| c.get(i));
                restore_table(t, c.map(|t| t as &dyn toml_edit::TableLike));
            }
        }
        Item::Value(v) => restore_value(v, cur.and_then(Item::as_value)),
        Item::None => {}
    }
}

fn restore_value(v: &mut Value, cur: Option<&Value>) {
    match v {
        Value::InlineTable(t) => {
            let c = cur.and_then(Value::as_inline_table);
            restore_table(t, c.map(|t| t as &dyn toml_edit::TableLike));
        }
        Value::Array(a) => {
            let c = cur.and_then(Value::as_array);
            for (i, el) in a.iter_mut().enumerate() {
                restore_value(el, c.and_then(|c| c.get(i)));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_value_without_counterpart_stays() {
        let text = "[[control.tokens]]\nname = \"new\"\nsha256 = \"<redacted>\"\n";
        assert_eq!(restore_redacted(text, ""), text);
    }
}
