//! A minimal stand-in for GitLab's CI/CD expression language, behind the signature of
//! `crate::expr::evaluate`, until that module lands (then the call sites switch to it and this
//! file goes). It knows `$VAR`, `"string"`/`'string'`, `null`, `/regex/flags`, `==`, `!=`, `=~`,
//! `!~`, `&&`, `||` and parentheses.

use regex::RegexBuilder;

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError(pub String);

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Variable(String),
    Text(String),
    Pattern(String, String),
    Null,
    Equals,
    NotEquals,
    Matches,
    NotMatches,
    And,
    Or,
    Open,
    Close,
}

#[derive(Debug, Clone)]
enum Operand {
    Value(Option<String>),
    Pattern(String, String),
}

/// Evaluate `expression` with variables from `lookup`.
///
/// # Errors
/// The expression is not valid.
pub fn evaluate(
    expression: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, ExprError> {
    let tokens = tokenize(expression)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        lookup,
    };
    let value = parser.or()?;
    if parser.position != parser.tokens.len() {
        return Err(ExprError(format!(
            "invalid expression syntax: {expression}"
        )));
    }
    Ok(truthy(&value))
}

fn truthy(operand: &Operand) -> bool {
    match operand {
        Operand::Value(value) => value.as_deref().is_some_and(|text| !text.is_empty()),
        Operand::Pattern(..) => true,
    }
}

fn tokenize(expression: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = expression.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    let bad = || ExprError(format!("invalid expression syntax: {expression}"));
    while index < chars.len() {
        let current = chars[index];
        let next = chars.get(index + 1).copied();
        match current {
            ' ' | '\t' | '\n' => index += 1,
            '(' => {
                tokens.push(Token::Open);
                index += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                index += 1;
            }
            '=' if next == Some('=') => {
                tokens.push(Token::Equals);
                index += 2;
            }
            '=' if next == Some('~') => {
                tokens.push(Token::Matches);
                index += 2;
            }
            '!' if next == Some('=') => {
                tokens.push(Token::NotEquals);
                index += 2;
            }
            '!' if next == Some('~') => {
                tokens.push(Token::NotMatches);
                index += 2;
            }
            '&' if next == Some('&') => {
                tokens.push(Token::And);
                index += 2;
            }
            '|' if next == Some('|') => {
                tokens.push(Token::Or);
                index += 2;
            }
            '$' => {
                let braced = next == Some('{');
                let start = if braced { index + 2 } else { index + 1 };
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                if end == start {
                    return Err(bad());
                }
                tokens.push(Token::Variable(chars[start..end].iter().collect()));
                index = if braced { end + 1 } else { end };
            }
            '"' | '\'' => {
                let end = chars[index + 1..]
                    .iter()
                    .position(|c| *c == current)
                    .ok_or_else(bad)?
                    + index
                    + 1;
                tokens.push(Token::Text(chars[index + 1..end].iter().collect()));
                index = end + 1;
            }
            '/' => {
                let mut end = index + 1;
                while end < chars.len() && chars[end] != '/' {
                    if chars[end] == '\\' {
                        end += 1;
                    }
                    end += 1;
                }
                if end >= chars.len() {
                    return Err(bad());
                }
                let mut flags_end = end + 1;
                while flags_end < chars.len() && chars[flags_end].is_ascii_alphabetic() {
                    flags_end += 1;
                }
                tokens.push(Token::Pattern(
                    chars[index + 1..end].iter().collect(),
                    chars[end + 1..flags_end].iter().collect(),
                ));
                index = flags_end;
            }
            _ if expression[expression.char_indices().nth(index).map_or(0, |(at, _)| at)..]
                .starts_with("null") =>
            {
                tokens.push(Token::Null);
                index += 4;
            }
            _ => return Err(bad()),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn or(&mut self) -> Result<Operand, ExprError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.position += 1;
            let right = self.and()?;
            left = Operand::Value(Some(if truthy(&left) || truthy(&right) {
                "true".into()
            } else {
                String::new()
            }));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Operand, ExprError> {
        let mut left = self.comparison()?;
        while self.peek() == Some(&Token::And) {
            self.position += 1;
            let right = self.comparison()?;
            left = Operand::Value(Some(if truthy(&left) && truthy(&right) {
                "true".into()
            } else {
                String::new()
            }));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Operand, ExprError> {
        let left = self.operand()?;
        let operator = match self.peek() {
            Some(
                token @ (Token::Equals | Token::NotEquals | Token::Matches | Token::NotMatches),
            ) => token.clone(),
            _ => return Ok(left),
        };
        self.position += 1;
        let right = self.operand()?;
        let result = match operator {
            Token::Equals => same(&left, &right),
            Token::NotEquals => !same(&left, &right),
            Token::Matches => matches(&left, &right)?,
            _ => !matches(&left, &right)?,
        };
        Ok(Operand::Value(Some(if result {
            "true".into()
        } else {
            String::new()
        })))
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| ExprError("invalid expression syntax".into()))?;
        self.position += 1;
        match token {
            Token::Variable(name) => Ok(Operand::Value((self.lookup)(&name))),
            Token::Text(text) => Ok(Operand::Value(Some(text))),
            Token::Pattern(pattern, flags) => Ok(Operand::Pattern(pattern, flags)),
            Token::Null => Ok(Operand::Value(None)),
            Token::Open => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(ExprError(
                        "invalid expression syntax: unbalanced parentheses".into(),
                    ));
                }
                self.position += 1;
                Ok(inner)
            }
            _ => Err(ExprError("invalid expression syntax".into())),
        }
    }
}

fn same(left: &Operand, right: &Operand) -> bool {
    match (left, right) {
        (Operand::Value(a), Operand::Value(b)) => a == b,
        (Operand::Pattern(a, x), Operand::Pattern(b, y)) => a == b && x == y,
        _ => false,
    }
}

fn matches(left: &Operand, right: &Operand) -> Result<bool, ExprError> {
    let (Operand::Value(value), Operand::Pattern(pattern, flags)) = (left, right) else {
        return Ok(false);
    };
    let Some(value) = value else { return Ok(false) };
    let regex = RegexBuilder::new(pattern)
        .case_insensitive(flags.contains('i'))
        .multi_line(flags.contains('m'))
        .dot_matches_new_line(flags.contains('s'))
        .build()
        .map_err(|error| ExprError(format!("invalid regular expression /{pattern}/: {error}")))?;
    Ok(regex.is_match(value))
}
