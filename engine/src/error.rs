//! Error kinds the CLI maps to exit codes.
//!
//! A [`UserError`] is a problem with something the user gave (a file, a flag, a
//! checkpoint): the CLI prints it and exits with code 2. Everything else is an
//! internal error (exit 1).

use std::fmt;

/// A bad input: the message names the thing and the fix.
#[derive(Debug, Clone)]
pub struct UserError(pub String);

impl UserError {
    pub fn new(msg: impl Into<String>) -> Self {
        UserError(msg.into())
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// True if any error in the chain is a [`UserError`].
pub fn is_user_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<UserError>().is_some())
}

/// Return early with a [`UserError`].
#[macro_export]
macro_rules! user_bail {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::error::UserError::new(format!($($arg)*))))
    };
}
