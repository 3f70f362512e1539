//! SQLSTATE codes walstream reports, named as in PostgreSQL's `utils/errcodes.h`.

/// `00000` successful_completion.
pub const SUCCESSFUL_COMPLETION: &str = "00000";
/// `01000` warning.
pub const WARNING: &str = "01000";
/// `08006` connection_failure.
pub const CONNECTION_FAILURE: &str = "08006";
/// `08P01` protocol_violation.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// `0A000` feature_not_supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// `22021` character_not_in_repertoire (invalid byte sequence for an encoding).
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
/// `22003` numeric_value_out_of_range.
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
/// `22P02` invalid_text_representation.
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
/// `22P03` invalid_binary_representation.
pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
/// `22023` invalid_parameter_value.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// `25000` invalid_transaction_state.
pub const INVALID_TRANSACTION_STATE: &str = "25000";
/// `26000` invalid_sql_statement_name (prepared statement does not exist).
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// `40001` serialization_failure (also a query canceled by a recovery conflict).
pub const T_R_SERIALIZATION_FAILURE: &str = "40001";
/// `F0000` config_file_error.
pub const CONFIG_FILE_ERROR: &str = "F0000";
/// `28000` invalid_authorization_specification.
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
/// `28P01` invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// `3D000` invalid_catalog_name (database does not exist).
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// `34000` invalid_cursor_name (portal does not exist).
pub const INVALID_CURSOR_NAME: &str = "34000";
/// `42501` insufficient_privilege.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// `42601` syntax_error.
pub const SYNTAX_ERROR: &str = "42601";
/// `42602` invalid_name.
pub const INVALID_NAME: &str = "42602";
/// `42703` undefined_column.
pub const UNDEFINED_COLUMN: &str = "42703";
/// `42883` undefined_function.
pub const UNDEFINED_FUNCTION: &str = "42883";
/// `42P05` duplicate_prepared_statement.
pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// `42622` name_too_long.
pub const NAME_TOO_LONG: &str = "42622";
/// `42704` undefined_object.
pub const UNDEFINED_OBJECT: &str = "42704";
/// `42710` duplicate_object.
pub const DUPLICATE_OBJECT: &str = "42710";
/// `53300` too_many_connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// `53400` configuration_limit_exceeded.
pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
/// `55000` object_not_in_prerequisite_state.
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// `55006` object_in_use.
pub const OBJECT_IN_USE: &str = "55006";
/// `57014` query_canceled.
pub const QUERY_CANCELED: &str = "57014";
/// `57P01` admin_shutdown.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// `57P02` crash_shutdown.
pub const CRASH_SHUTDOWN: &str = "57P02";
/// `57P03` cannot_connect_now.
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// `58030` io_error.
pub const IO_ERROR: &str = "58030";
/// `58P01` undefined_file.
pub const UNDEFINED_FILE: &str = "58P01";
/// `XX000` internal_error.
pub const INTERNAL_ERROR: &str = "XX000";
/// `XX001` data_corrupted.
pub const DATA_CORRUPTED: &str = "XX001";

/// Whether `code` has the form of a SQLSTATE: five characters from `[0-9A-Z]`.
pub fn is_well_formed(code: &str) -> bool {
    code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constant_is_well_formed() {
        let all = [
            SUCCESSFUL_COMPLETION,
            WARNING,
            CONNECTION_FAILURE,
            PROTOCOL_VIOLATION,
            FEATURE_NOT_SUPPORTED,
            CHARACTER_NOT_IN_REPERTOIRE,
            INVALID_PARAMETER_VALUE,
            INVALID_BINARY_REPRESENTATION,
            INVALID_TEXT_REPRESENTATION,
            INVALID_SQL_STATEMENT_NAME,
            INVALID_CURSOR_NAME,
            INVALID_NAME,
            DUPLICATE_PREPARED_STATEMENT,
            UNDEFINED_FUNCTION,
            UNDEFINED_COLUMN,
            INVALID_TRANSACTION_STATE,
            INVALID_AUTHORIZATION_SPECIFICATION,
            INVALID_PASSWORD,
            CONFIG_FILE_ERROR,
            INVALID_CATALOG_NAME,
            INSUFFICIENT_PRIVILEGE,
            SYNTAX_ERROR,
            NAME_TOO_LONG,
            UNDEFINED_OBJECT,
            DUPLICATE_OBJECT,
            TOO_MANY_CONNECTIONS,
            CONFIGURATION_LIMIT_EXCEEDED,
            OBJECT_NOT_IN_PREREQUISITE_STATE,
            OBJECT_IN_USE,
            QUERY_CANCELED,
            ADMIN_SHUTDOWN,
            CRASH_SHUTDOWN,
            CANNOT_CONNECT_NOW,
            IO_ERROR,
            UNDEFINED_FILE,
            INTERNAL_ERROR,
            DATA_CORRUPTED,
        ];
        assert!(all.iter().all(|c| is_well_formed(c)));
        assert!(!is_well_formed("08p01"));
        assert!(!is_well_formed("0800"));
    }
}
