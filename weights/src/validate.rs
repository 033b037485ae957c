//! One error listing every way a checkpoint differs from what a model requests.

use std::fmt;

use crate::dtype::fmt_shape;

/// A tensor present under the expected name with another shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// Every problem found while matching a checkpoint against a model, reported at once.
///
/// Display lists one problem per line, for example:
/// ```text
/// checkpoint unet/ does not match the model: 1 missing, 1 mis-shaped, 1 unexpected tensor(s)
///   missing     conv_in.weight    expected (32, 4, 3, 3)
///   mis-shaped  conv_out.bias     expected (4,) found (8,)
///   unexpected  extra.weight      found (3,)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidationError {
    /// What was validated (usually the checkpoint path).
    pub source: String,
    /// Requested but absent: (name, expected shape).
    pub missing: Vec<(String, Vec<usize>)>,
    /// Present with another shape.
    pub mismatched: Vec<ShapeMismatch>,
    /// Present but unreadable (e.g. an integer dtype): (name, reason).
    pub unreadable: Vec<(String, String)>,
    /// In the checkpoint but never requested: (name, shape found).
    pub unexpected: Vec<(String, Vec<usize>)>,
}

impl ValidationError {
    pub fn new(source: impl Into<String>) -> ValidationError {
        ValidationError {
            source: source.into(),
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.mismatched.is_empty()
            && self.unreadable.is_empty()
            && self.unexpected.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.missing.len() + self.mismatched.len() + self.unreadable.len() + self.unexpected.len()
    }

    /// `Ok(())` when there is nothing to report, else `Err(self)`. Missing, mis-shaped and
    /// unreadable tensors keep request order (the first entry of a name is kept);
    /// unexpected ones are sorted by name.
    pub fn into_result(mut self) -> Result<(), ValidationError> {
        if self.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        self.missing.retain(|m| seen.insert(m.0.clone()));
        seen.clear();
        self.mismatched.retain(|m| seen.insert(m.name.clone()));
        seen.clear();
        self.unreadable.retain(|m| seen.insert(m.0.clone()));
        self.unexpected.sort();
        self.unexpected.dedup();
        Err(self)
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = Vec::new();
        if !self.missing.is_empty() {
            counts.push(format!("{} missing", self.missing.len()));
        }
        if !self.mismatched.is_empty() {
            counts.push(format!("{} mis-shaped", self.mismatched.len()));
        }
        if !self.unreadable.is_empty() {
            counts.push(format!("{} unreadable", self.unreadable.len()));
        }
        if !self.unexpected.is_empty() {
            counts.push(format!("{} unexpected", self.unexpected.len()));
        }
        write!(
            f,
            "checkpoint {} does not match the model: {} tensor(s)",
            self.source,
            counts.join(", ")
        )?;
        let width = self
            .missing
            .iter()
            .map(|m| m.0.len())
            .chain(self.mismatched.iter().map(|m| m.name.len()))
            .chain(self.unreadable.iter().map(|m| m.0.len()))
            .chain(self.unexpected.iter().map(|m| m.0.len()))
            .max()
            .unwrap_or(0);
        for (name, shape) in &self.missing {
            write!(
                f,
                "\n  missing     {name:width$}  expected {}",
                fmt_shape(shape)
            )?;
        }
        for m in &self.mismatched {
            write!(
                f,
                "\n  mis-shaped  {:width$}  expected {} found {}",
                m.name,
                fmt_shape(&m.expected),
                fmt_shape(&m.found)
            )?;
        }
        for (name, why) in &self.unreadable {
            write!(f, "\n  unreadable  {name:width$}  {why}")?;
        }
        for (name, shape) in &self.unexpected {
            write!(
                f,
                "\n  unexpected  {name:width$}  found {}",
                fmt_shape(shape)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}
