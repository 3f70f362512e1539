//! Splitting pg_hba.conf text into lines, fields and tokens (`libpq/hba.c: tokenize_auth_file`,
//! `next_field_expand`, `next_token`).

/// PostgreSQL's `MAX_TOKEN`: a token must be shorter than this many bytes.
const MAX_TOKEN: usize = 256;

/// One token of a field: its text with quotes removed, and whether it began with a quote
/// (a quoted keyword such as `"all"` is an ordinary name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaToken {
    /// The text, without the double quotes (`""` inside quotes is one `"`).
    pub text: String,
    /// Whether the token started with a double quote.
    pub quoted: bool,
}

impl HbaToken {
    /// Whether this token is the unquoted keyword `keyword` (`hba.c: token_is_keyword`).
    pub fn is_keyword(&self, keyword: &str) -> bool {
        !self.quoted && self.text == keyword
    }

    /// Whether the text equals `name`, quoted or not (`hba.c: token_matches`).
    pub fn matches(&self, name: &str) -> bool {
        self.text == name
    }
}

/// A non-empty line: its first line number, the raw text and its fields (each a comma list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TokenizedLine {
    pub line_number: usize,
    pub raw: String,
    pub fields: Vec<Vec<HbaToken>>,
}

/// A tokenizer fault: the line and PostgreSQL's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TokenizeError {
    pub line_number: usize,
    pub message: String,
}

/// Splits `text` into its non-empty lines, joining backslash continuations.
pub(super) fn tokenize(text: &str) -> Result<Vec<TokenizedLine>, TokenizeError> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').peekable();
    let mut line_number = 1;
    while let Some(first) = lines.next() {
        if first.is_empty() && lines.peek().is_none() {
            break;
        }
        let (raw, continuations) = join_continuations(first, &mut lines);
        let fields =
            tokenize_line(&raw).map_err(|message| TokenizeError { line_number, message })?;
        if !fields.is_empty() {
            out.push(TokenizedLine { line_number, raw, fields });
        }
        line_number += continuations + 1;
    }
    Ok(out)
}

/// One logical line: `first` plus the lines a trailing backslash pulls in.
fn join_continuations<'a>(
    first: &str,
    lines: &mut impl Iterator<Item = &'a str>,
) -> (String, usize) {
    let mut raw = strip_cr(first).to_owned();
    let mut continuations = 0;
    while raw.ends_with('\\') {
        raw.pop();
        match lines.next() {
            Some(next) => {
                raw.push_str(strip_cr(next));
                continuations += 1;
            }
            None => break,
        }
    }
    (raw, continuations)
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// `pg_isblank`: space, tab, carriage return.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// The fields of one line (an empty list for a blank or comment line).
fn tokenize_line(line: &str) -> Result<Vec<Vec<HbaToken>>, String> {
    let mut rest = line;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let field = next_field(&mut rest)?;
        if !field.is_empty() {
            fields.push(field);
        }
    }
    Ok(fields)
}

/// A comma list of tokens (`hba.c: next_field_expand`).
fn next_field(rest: &mut &str) -> Result<Vec<HbaToken>, String> {
    let mut tokens = Vec::new();
    while let Some((token, trailing_comma)) = next_token(rest)? {
        if !token.quoted && token.text.starts_with('@') && token.text.len() > 1 {
            // hba.c: tokenize_inc_file; walstream reads one file only.
            return Err(format!(
                "could not open secondary authentication file \"{}\": inclusion with @ is not supported",
                token.text
            ));
        }
        tokens.push(token);
        if !trailing_comma {
            break;
        }
    }
    Ok(tokens)
}

/// The next token and whether a comma ended it, or `None` at end of line or comment
/// (`hba.c: next_token`).
fn next_token(rest: &mut &str) -> Result<Option<(HbaToken, bool)>, String> {
    let mut chars = rest.char_indices().peekable();
    while chars.next_if(|&(_, c)| is_blank(c) || c == ',').is_some() {}
    let mut text = String::new();
    let (mut in_quote, mut was_quote, mut saw_quote, mut quoted) = (false, false, false, false);
    let mut trailing_comma = false;
    let mut end = rest.len();
    while let Some(&(i, c)) = chars.peek() {
        if is_blank(c) && !in_quote {
            end = i;
            break;
        }
        chars.next();
        if c == '#' && !in_quote {
            end = rest.len();
            break;
        }
        if text.len() >= MAX_TOKEN - 1 {
            return Err("authentication file token too long".to_owned());
        }
        if c == ',' && !in_quote {
            trailing_comma = true;
            end = i + 1;
            break;
        }
        if c != '"' || was_quote {
            text.push(c);
        }
        was_quote = in_quote && c == '"' && !was_quote;
        if c == '"' {
            in_quote = !in_quote;
            saw_quote = true;
            quoted |= text.is_empty();
        }
    }
    *rest = rest.get(end..).unwrap_or("");
    if saw_quote || !text.is_empty() {
        Ok(Some((HbaToken { text, quoted }, trailing_comma)))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str, quoted: bool) -> HbaToken {
        HbaToken { text: text.to_owned(), quoted }
    }

    fn fields(line: &str) -> Vec<Vec<HbaToken>> {
        tokenize_line(line).unwrap()
    }

    #[test]
    fn blanks_commas_comments_quotes() {
        assert_eq!(
            fields("host  a,b\t\"all\" 1.2.3.4/32 md5 # comment"),
            vec![
                vec![tok("host", false)],
                vec![tok("a", false), tok("b", false)],
                vec![tok("all", true)],
                vec![tok("1.2.3.4/32", false)],
                vec![tok("md5", false)],
            ]
        );
        assert_eq!(fields("\"a b\"\"c\",d"), vec![vec![tok("a b\"c", true), tok("d", false)]]);
        assert_eq!(fields("x\"y\""), vec![vec![tok("xy", false)]]);
        assert_eq!(fields("\"\""), vec![vec![tok("", true)]]);
        assert_eq!(fields("  # only a comment"), Vec::<Vec<HbaToken>>::new());
        assert_eq!(fields("a#b"), vec![vec![tok("a", false)]]);
        assert_eq!(fields("\"#x\""), vec![vec![tok("#x", true)]]);
    }

    #[test]
    fn include_files_are_refused_but_quoted_at_is_a_name() {
        assert!(tokenize_line("host all @users").is_err());
        assert_eq!(fields("\"@users\" @"), vec![vec![tok("@users", true)], vec![tok("@", false)]]);
    }

    #[test]
    fn continuation_and_line_numbers() {
        let lines = tokenize("# c\n\nhost all \\\nall\r\nlocal all all trust\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line_number, 3);
        assert_eq!(lines[0].raw, "host all all");
        assert_eq!(lines[1].line_number, 5);
    }

    #[test]
    fn long_token() {
        let long = "a".repeat(300);
        let err = tokenize(&format!("\n{long}")).unwrap_err();
        assert_eq!(err.line_number, 2);
        assert_eq!(err.message, "authentication file token too long");
    }
}
