//! Helpers shared by the fuzz targets.

use serde_json::Value;

/// Every key and string value inside `value`, and `value` itself as JSON: the texts an error
/// message may legitimately quote back.
pub fn texts_of(value: &Value) -> Vec<String> {
    fn walk(value: &Value, texts: &mut Vec<String>) {
        match value {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| walk(v, texts)),
            Value::Object(map) => {
                for (key, v) in map {
                    texts.push(key.clone());
                    walk(v, texts);
                }
            }
            _ => {}
        }
    }
    let mut texts = vec![value.to_string()];
    walk(value, &mut texts);
    texts
}
