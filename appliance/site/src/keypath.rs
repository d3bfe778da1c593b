//! Key paths (`nodes[1].mac`) and finding the line a key path is written on in
//! a TOML text. Only used to point error messages at the right line.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into the config document.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_string()));
        next
    }
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }
    /// Parses the display form back (`a.b[2].c`); keys containing `.` or `[`
    /// are not representable, which the model never uses.
    pub fn parse(text: &str) -> Self {
        let mut segs = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                if open > 0 {
                    segs.push(Segment::Key(rest[..open].to_string()));
                }
                rest = &rest[open..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let close = stripped.find(']').unwrap_or(stripped.len());
                    if let Ok(i) = stripped[..close].parse() {
                        segs.push(Segment::Index(i));
                    }
                    rest = stripped.get(close + 1..).unwrap_or("");
                }
            } else {
                segs.push(Segment::Key(rest.to_string()));
            }
        }
        Self(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line number of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line where the deepest existing prefix of `path` is written in `text`
/// (the key itself for a table entry, the element for an array index).
pub fn locate(text: &str, path: &KeyPath) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut best: Option<usize> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for seg in &path.0 {
        match seg {
            Segment::Key(k) => {
                let t = match (table, value) {
                    (Some(t), _) => t,
                    (None, Some(v)) => v.as_table()?,
                    _ => return best,
                };
                let Some((key, val)) = t.get_key_value(k.as_str()) else {
                    return best;
                };
                best = Some(line_of(text, key.span().start));
                table = None;
                value = Some(val.get_ref());
            }
            Segment::Index(n) => {
                let arr = value.and_then(DeValue::as_array);
                let Some(elem) = arr.and_then(|a| a.get(*n)) else {
                    return best;
                };
                best = Some(line_of(text, elem.span().start));
                value = Some(elem.get_ref());
                table = None;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let p = KeyPath::root().key("nodes").index(1).key("mac");
        assert_eq!(p.to_string(), "nodes[1].mac");
        assert_eq!(KeyPath::parse("nodes[1].mac"), p);
    }

    #[test]
    fn locates_keys_and_array_elements() {
        let text = "[site]\nid = \"lab\"\n\n[[nodes]]\nmac = \"a\"\n\n[[nodes]]\nmac = \"b\"\nprofile = \"x\"\n";
        assert_eq!(locate(text, &KeyPath::parse("site.id")), Some(2));
        assert_eq!(locate(text, &KeyPath::parse("nodes[1].profile")), Some(9));
        assert_eq!(locate(text, &KeyPath::parse("nodes[1].ip")), Some(7));
    }
}
