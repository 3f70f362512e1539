//! The engine's errors, each with PostgreSQL's SQLSTATE, message and DETAIL.

/// An engine error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// 22P02: a value's text does not parse.
    #[error("invalid input syntax for type {ty}: \"{input}\"")]
    InvalidText {
        /// The type's name.
        ty: String,
        /// The input.
        input: String,
    },
    /// 22003: an integer's text is outside its type's range.
    #[error("value \"{input}\" is out of range for type {ty}")]
    InputOutOfRange {
        /// The type's name.
        ty: String,
        /// The input.
        input: String,
    },
    /// 22003: a float's text is outside double precision.
    #[error("\"{input}\" is out of range for type double precision")]
    FloatOutOfRange {
        /// The input.
        input: String,
    },
    /// 22003: integer arithmetic overflowed (`integer out of range`).
    #[error("{0} out of range")]
    Overflow(&'static str),
    /// 22012.
    #[error("division by zero")]
    DivisionByZero,
    /// 22001.
    #[error("value too long for type character varying({n})")]
    StringTooLong {
        /// The limit.
        n: u32,
    },
    /// 22P02: bad hex digit in bytea.
    #[error("invalid hexadecimal digit: \"{digit}\"")]
    InvalidHexDigit {
        /// The digit.
        digit: char,
    },
    /// 22P02: odd number of hex digits in bytea.
    #[error("invalid hexadecimal data: odd number of digits")]
    OddHexDigits,
    /// 22007.
    #[error("invalid input syntax for type timestamp with time zone: \"{input}\"")]
    InvalidDatetime {
        /// The input.
        input: String,
    },
    /// 22008.
    #[error("date/time field value out of range: \"{input}\"")]
    DatetimeOutOfRange {
        /// The input.
        input: String,
    },
    /// 23505.
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        /// `t_pkey`.
        constraint: String,
        /// `Key (k)=(1) already exists.`
        detail: String,
    },
    /// 23502.
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation {
        /// The column.
        column: String,
        /// The table.
        table: String,
        /// `Failing row contains (null, b).`
        detail: String,
    },
    /// 42P01.
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// 42P07.
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    /// 40P01.
    #[error("deadlock detected")]
    Deadlock {
        /// Who waits for whom.
        detail: String,
    },
    /// 55P03: a row lock wait outlasted `lock_timeout`.
    #[error("canceling statement due to lock timeout")]
    LockTimeout,
    /// 21000: ON CONFLICT DO UPDATE met the same row twice.
    #[error("ON CONFLICT DO UPDATE command cannot affect row a second time")]
    CardinalityViolation,
    /// 25006.
    #[error("cannot execute {0} in a read-only transaction")]
    ReadOnly(String),
    /// 58030 / XX000: the WAL could not be written.
    #[error("could not write WAL: {0}")]
    Log(String),
    /// XX000: an internal inconsistency (redo of a change that does not apply).
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// PostgreSQL's SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        use EngineError::*;
        match self {
            InvalidText { .. } | InvalidHexDigit { .. } | OddHexDigits => "22P02",
            InputOutOfRange { .. } | FloatOutOfRange { .. } | Overflow(_) => "22003",
            DivisionByZero => "22012",
            StringTooLong { .. } => "22001",
            InvalidDatetime { .. } => "22007",
            DatetimeOutOfRange { .. } => "22008",
            UniqueViolation { .. } => "23505",
            NotNullViolation { .. } => "23502",
            UndefinedTable(_) => "42P01",
            DuplicateTable(_) => "42P07",
            Deadlock { .. } => "40P01",
            LockTimeout => "55P03",
            CardinalityViolation => "21000",
            ReadOnly(_) => "25006",
            Log(_) => "58030",
            Internal(_) => "XX000",
        }
    }

    /// PostgreSQL's DETAIL for this error, if it has one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            EngineError::UniqueViolation { detail, .. }
            | EngineError::NotNullViolation { detail, .. }
            | EngineError::Deadlock { detail } => Some(detail),
            _ => None,
        }
    }

    /// PostgreSQL's HINT for this error, if it has one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            EngineError::Deadlock { .. } => Some("See server log for query details."),
            EngineError::UndefinedTable(_) => None,
            _ => None,
        }
    }
}
