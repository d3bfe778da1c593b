//! The operator's reference of every configuration key, rendered as
//! Markdown from the shipped JSON Schemas ([`crate::schema`]), so the
//! documentation is the model's own words and cannot drift: a test writes
//! `docs/site-reference.md` with `KINDLING_UPDATE_SCHEMA=1` and fails when
//! the checked-in copy differs.
//!
//! Pure: a schema in, text out. One table per top-level section; nested
//! tables become dotted keys, arrays of tables `key[].field`.

use serde_json::{Map, Value};

/// The whole reference: `site.toml`, then `profiles/NAME.toml`.
pub fn render(site: &Value, profile: &Value) -> String {
    let mut out = String::from(
        "# Site configuration reference\n\n\
         Generated from `schema/site.schema.json` and `schema/profile.schema.json` \
         (the site model's own documentation) by `cargo test -p kindling-site --test reference`; \
         regenerate with `KINDLING_UPDATE_SCHEMA=1 cargo test -p kindling-site --test reference`. \
         Do not edit by hand.\n\n\
         Keys are TOML paths: `network.lan.address` is `address` under `[network.lan]`, \
         `nodes[].mac` is `mac` in each `[[nodes]]`. A key left out takes its default; \
         `required` keys have none.\n",
    );
    out.push_str("\n## `site.toml`\n\n");
    out.push_str(&document(site));
    out.push_str("\n## `profiles/NAME.toml`\n\n");
    out.push_str(&document(profile));
    out
}

/// One schema: its description, then one table per top-level key.
fn document(schema: &Value) -> String {
    let mut out = String::new();
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        out.push_str(&one_line(d));
        out.push_str("\n\n");
    }
    let defs = schema.get("$defs").and_then(Value::as_object);
    let walker = Walker { defs };
    let required = required_of(schema);
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return out;
    };
    let mut leaves = Vec::new();
    for (key, prop) in props {
        let mut rows = Vec::new();
        walker.walk(key, prop, None, required.contains(&key.as_str()), &mut rows);
        // Sections (object-valued top-level keys) get their own table;
        // plain top-level keys share one.
        if rows.len() == 1 && !rows[0].key.contains(['.', '[']) {
            leaves.extend(rows);
            continue;
        }
        out.push_str(&format!("### `{key}`\n\n"));
        if let Some(d) = walker.description(prop) {
            out.push_str(&one_line(&d));
            out.push_str("\n\n");
        }
        out.push_str(&table(&rows));
        out.push('\n');
    }
    if !leaves.is_empty() {
        out.push_str("### Top-level keys\n\n");
        out.push_str(&table(&leaves));
    }
    out
}

struct Row {
    key: String,
    kind: String,
    default: String,
    meaning: String,
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from("| key | type | default | meaning |\n|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.key,
            cell(&r.kind),
            cell(&r.default),
            cell(&r.meaning)
        ));
    }
    out
}

/// Text fit for one Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Paragraphs as one line (the model's doc comments wrap at 80 columns).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn required_of(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

struct Walker<'a> {
    defs: Option<&'a Map<String, Value>>,
}

impl<'a> Walker<'a> {
    /// `$ref` followed (once per level), `anyOf [X, null]` unwrapped; the
    /// second value says whether null was allowed.
    fn resolve(&self, schema: &'a Value) -> (&'a Value, bool) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            if let Some(def) = self.defs.and_then(|d| d.get(name)) {
                return self.resolve(def);
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            let not_null: Vec<&Value> = any
                .iter()
                .filter(|s| s.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if not_null.len() == 1 && any.len() == 2 {
                return (self.resolve(not_null[0]).0, true);
            }
        }
        let nullable = schema
            .get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t == "null"));
        (schema, nullable)
    }

    /// The property's own description, else its type's.
    fn description(&self, prop: &Value) -> Option<String> {
        if let Some(d) = prop.get("description").and_then(Value::as_str) {
            return Some(d.to_string());
        }
        let mut at = prop;
        loop {
            if let Some(d) = at.get("description").and_then(Value::as_str) {
                return Some(d.to_string());
            }
            if let Some(r) = at.get("$ref").and_then(Value::as_str) {
                at = self.defs?.get(r.trim_start_matches("#/$defs/"))?;
                continue;
            }
            if let Some(any) = at.get("anyOf").and_then(Value::as_array) {
                at = any.iter().find(|s| s.get("type") != Some(&"null".into()))?;
                continue;
            }
            return None;
        }
    }

    fn walk(
        &self,
        key: &str,
        prop: &'a Value,
        inherited_default: Option<&Value>,
        required: bool,
        rows: &mut Vec<Row>,
    ) {
        let (ty, nullable) = self.resolve(prop);
        let default = prop.get("default").or(inherited_default);
        let props = ty.get("properties").and_then(Value::as_object);
        if let (Some(props), None) = (props, ty.get("oneOf")) {
            let inner_required = required_of(ty);
            for (k, p) in props {
                let inner_default = default.and_then(|d| d.get(k));
                let is_required = inner_required.contains(&k.as_str()) && default.is_none();
                self.walk(&format!("{key}.{k}"), p, inner_default, is_required, rows);
            }
            return;
        }
        let item = ty.get("items").map(|i| self.resolve(i).0);
        if let Some(item_props) = item
            .and_then(|i| i.get("properties"))
            .and_then(Value::as_object)
        {
            if item.is_some_and(|i| i.get("oneOf").is_none()) {
                rows.push(Row {
                    key: key.to_string(),
                    kind: "list of tables".into(),
                    default: default_text(default, required),
                    meaning: self
                        .description(prop)
                        .map(|d| one_line(&d))
                        .unwrap_or_default(),
                });
                let inner_required = item.map(required_of).unwrap_or_default();
                for (k, p) in item_props {
                    let is_required = inner_required.contains(&k.as_str());
                    self.walk(&format!("{key}[].{k}"), p, None, is_required, rows);
                }
                return;
            }
        }
        let mut kind = self.kind(ty);
        if nullable {
            kind.push_str(" (optional)");
        }
        rows.push(Row {
            key: key.to_string(),
            kind,
            default: default_text(default, required),
            meaning: self
                .description(prop)
                .map(|d| one_line(&d))
                .unwrap_or_default(),
        });
    }

    /// What a value may be, in words: `"dhcp" \| "static"`, `integer`,
    /// `string (ipv4)`, `list of string`.
    fn kind(&self, ty: &Value) -> String {
        if let Some(values) = ty.get("enum").and_then(Value::as_array) {
            return values.iter().map(quoted).collect::<Vec<_>>().join(" | ");
        }
        if let Some(c) = ty.get("const") {
            return quoted(c);
        }
        if let Some(alts) = ty.get("oneOf").and_then(Value::as_array) {
            let parts: Vec<String> = alts
                .iter()
                .map(|a| {
                    let (a, _) = self.resolve(a);
                    match a.get("properties").and_then(Value::as_object) {
                        Some(p) if a.get("const").is_none() => {
                            let req = required_of(a);
                            let keys: Vec<&str> = p
                                .keys()
                                .map(String::as_str)
                                .filter(|k| req.contains(k))
                                .collect();
                            format!("{{ {} }}", keys.join(", "))
                        }
                        _ => self.kind(a),
                    }
                })
                .collect();
            return parts.join(" | ");
        }
        let base = match ty.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "value".into(),
        };
        if base == "array" {
            let item = ty
                .get("items")
                .map(|i| self.kind(self.resolve(i).0))
                .unwrap_or_else(|| "value".into());
            return format!("list of {item}");
        }
        match ty.get("format").and_then(Value::as_str) {
            Some(f) if base == "string" => format!("string ({f})"),
            _ => base,
        }
    }
}

fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`\"{s}\"`"),
        other => format!("`{other}`"),
    }
}

fn default_text(default: Option<&Value>, required: bool) -> String {
    match default {
        None if required => "required".into(),
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) if s.is_empty() => "`\"\"`".into(),
        Some(v) => quoted(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_tables_lists_enums_and_defaults() {
        let schema = json!({
            "description": "Demo.",
            "properties": {
                "net": {"$ref": "#/$defs/Net", "default": {"mode": "dhcp", "mtu": null}},
                "nodes": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "default": []},
                "name": {"type": "string", "description": "A | name\n  wrapped."}
            },
            "required": ["name"],
            "$defs": {
                "Net": {"properties": {
                    "mode": {"enum": ["dhcp", "static"]},
                    "mtu": {"type": ["integer", "null"], "description": "MTU."}
                }},
                "Node": {"properties": {"mac": {"type": "string", "format": "mac"}},
                         "required": ["mac"]}
            }
        });
        let text = document(&schema);
        for line in [
            "| `net.mode` | `\"dhcp\"` \\| `\"static\"` | `\"dhcp\"` |  |",
            "| `net.mtu` | integer (optional) | none | MTU. |",
            "| `nodes` | list of tables | `[]` |  |",
            "| `nodes[].mac` | string (mac) | required |  |",
            "| `name` | string | required | A \\| name wrapped. |",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
