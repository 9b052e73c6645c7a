//! Problems found in a policy, and where they are: every problem carries the file, the TOML key path
//! and a hint, and is reported as `file:line: message (hint)`.
//!
//! Validation never stops at the first problem: [`Problems`] collects all of them so an operator fixes
//! a file in one pass.

use std::fmt;
use std::path::PathBuf;

/// One segment of a TOML key path.
#[derive(Debug, Clone)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_owned())
    }
}
impl From<String> for Seg {
    fn from(s: String) -> Self {
        Seg::Key(s)
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A source file of the policy (the main file or an include).
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// Path as given (or `<embedded demo>`).
    pub path: PathBuf,
    /// Full text.
    pub text: String,
}

/// A problem in a policy file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Index into the source list.
    pub file: usize,
    /// Where in the document.
    pub path: Vec<Seg>,
    /// 1-based line, when known up front (parse errors); otherwise found from `path`.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// A problem with its location resolved, ready to print.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Located {
    /// The file.
    pub file: String,
    /// 1-based line (0 when the key is absent from the file).
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n    hint: {h}")?;
        }
        Ok(())
    }
}

/// Collects problems while a policy is compiled.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    /// Records a problem at `path` in `file`.
    pub fn add(&mut self, file: usize, path: Vec<Seg>, message: impl Into<String>, hint: Option<String>) {
        self.list.push(Problem { file, path, line: None, message: message.into(), hint });
    }

    /// Records a problem whose line is already known (a parse error).
    pub fn add_at_line(&mut self, file: usize, line: usize, message: impl Into<String>, hint: Option<String>) {
        self.list.push(Problem { file, path: Vec::new(), line: Some(line), message: message.into(), hint });
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Resolves every problem to `file:line`, in file then line order.
    pub fn locate(self, sources: &[PolicyFile]) -> Vec<Located> {
        let docs: Vec<Option<toml_edit::ImDocument<&str>>> =
            sources.iter().map(|s| toml_edit::ImDocument::parse(s.text.as_str()).ok()).collect();
        let mut out: Vec<Located> = self
            .list
            .into_iter()
            .map(|p| {
                let (file, line) = match sources.get(p.file) {
                    Some(src) => {
                        let line = p
                            .line
                            .unwrap_or_else(|| docs[p.file].as_ref().map_or(0, |d| line_of(d, &src.text, &p.path)));
                        (src.path.display().to_string(), line)
                    }
                    None => ("<policy>".to_owned(), 0),
                };
                Located { file, line, message: p.message, hint: p.hint }
            })
            .collect();
        out.sort_by(|a, b| (a.file.as_str(), a.line).cmp(&(b.file.as_str(), b.line)));
        out
    }
}

/// The 1-based line of the deepest key of `path` present in the document (0 when none is).
fn line_of(doc: &toml_edit::ImDocument<&str>, text: &str, path: &[Seg]) -> usize {
    use toml_edit::{Item, TableLike, Value};
    enum Node<'a> {
        Table(&'a dyn TableLike),
        Tables(&'a toml_edit::ArrayOfTables),
        Array(&'a toml_edit::Array),
        Leaf,
    }
    fn node(item: &Item) -> Node<'_> {
        match item {
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Tables(a),
            Item::Value(Value::InlineTable(t)) => Node::Table(t),
            Item::Value(Value::Array(a)) => Node::Array(a),
            _ => Node::Leaf,
        }
    }
    fn first_key_span(t: &dyn TableLike) -> Option<std::ops::Range<usize>> {
        t.iter().next().and_then(|(k, _)| t.get_key_value(k)).and_then(|(k, _)| k.span())
    }
    let mut cur = Node::Table(doc.as_table());
    let mut best: Option<std::ops::Range<usize>> = None;
    for seg in path {
        cur = match (seg, cur) {
            (Seg::Key(k), Node::Table(t)) => match t.get_key_value(k) {
                Some((key, item)) => {
                    best = key.span().or(best);
                    node(item)
                }
                None => break,
            },
            (Seg::Index(i), Node::Tables(a)) => match a.get(*i) {
                Some(t) => {
                    best = t.span().or_else(|| first_key_span(t)).or(best);
                    Node::Table(t)
                }
                None => break,
            },
            (Seg::Index(i), Node::Array(a)) => match a.get(*i) {
                Some(v) => {
                    best = v.span().or(best);
                    match v {
                        Value::InlineTable(t) => Node::Table(t),
                        Value::Array(a) => Node::Array(a),
                        _ => Node::Leaf,
                    }
                }
                None => break,
            },
            _ => break,
        };
    }
    best.map_or(0, |r| text[..r.start.min(text.len())].matches('\n').count() + 1)
}
