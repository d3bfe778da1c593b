//! Node tags: `KEY=VALUE` labels an operator puts on a node at runtime
//! (`kindling node tag MAC rack=r12`) and `[[selectors]]` ask for
//! (`tags = { rack = "r12" }`).
//!
//! Owns the one rule both sides check, so a selector can only ask for a
//! tag a node can carry. Pure.

use std::collections::BTreeMap;

/// A node's tags, key → value.
pub type NodeTags = BTreeMap<String, String>;

/// The most tags one node (or one selector) may carry.
pub const MAX_TAGS: usize = 16;
/// The longest key or value, in bytes.
pub const MAX_TAG_LEN: usize = 63;

/// Why a tag was refused; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag key {key:?}: {reason}")]
    Key { key: String, reason: &'static str },
    #[error("tag {key:?}: value {value:?}: {reason}")]
    Value {
        key: String,
        value: String,
        reason: &'static str,
    },
    #[error("{count} tags: at most {MAX_TAGS} per node")]
    Count { count: usize },
}

fn shown(text: &str) -> String {
    text.chars().take(MAX_TAG_LEN + 1).collect()
}

/// A key: 1 to 63 of lower-case ASCII letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit (`rack`, `gpu.model`).
pub fn check_key(key: &str) -> Result<(), TagError> {
    let refuse = |reason| {
        Err(TagError::Key {
            key: shown(key),
            reason,
        })
    };
    if key.is_empty() || key.len() > MAX_TAG_LEN {
        return refuse("a key has 1 to 63 characters");
    }
    if !key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return refuse("a key starts with a lower-case letter or a digit");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return refuse("a key is lower-case ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// A value: 1 to 63 of ASCII letters, digits, `-`, `_`, `.`.
pub fn check_value(key: &str, value: &str) -> Result<(), TagError> {
    let refuse = |reason| {
        Err(TagError::Value {
            key: shown(key),
            value: shown(value),
            reason,
        })
    };
    if value.is_empty() || value.len() > MAX_TAG_LEN {
        return refuse("a value has 1 to 63 characters");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return refuse("a value is ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Every key and value, and the count.
pub fn check_tags(tags: &NodeTags) -> Result<(), TagError> {
    for (key, value) in tags {
        check_key(key)?;
        check_value(key, value)?;
    }
    if tags.len() > MAX_TAGS {
        return Err(TagError::Count { count: tags.len() });
    }
    Ok(())
}

/// `k=v,k=v`, for messages.
pub fn display(tags: &NodeTags) -> String {
    let parts: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_bounded_and_named_when_refused() {
        assert!(check_key("rack").is_ok() && check_key("gpu.model-2").is_ok());
        for bad in ["", "Rack", "-rack", "ra ck", "räck", &"k".repeat(64)] {
            let e = check_key(bad).unwrap_err();
            assert!(e.to_string().starts_with("tag key"), "{bad:?}: {e}");
        }
        assert!(check_value("gpu", "A100").is_ok());
        for bad in ["", "a=b", "a b", "a,b", &"v".repeat(64)] {
            let e = check_value("gpu", bad).unwrap_err();
            assert!(e.to_string().contains("tag \"gpu\""), "{bad:?}: {e}");
        }
        let many: NodeTags = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert_eq!(
            check_tags(&many),
            Err(TagError::Count {
                count: MAX_TAGS + 1
            })
        );
    }
}
