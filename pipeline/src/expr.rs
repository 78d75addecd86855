//! GitLab's CI/CD expression language (`rules:if`, `workflow:rules:if`, `only/except:variables`),
//! lexed, parsed and evaluated the way GitLab's `Gitlab::Ci::Pipeline::Expression` does it.
//!
//! What GitLab does, and so what this does:
//! - Lexing is GitLab's: at each position (after skipping ASCII whitespace) the first lexeme that
//!   matches wins, in GitLab's order: `(`, `)`, `$[[ inputs.NAME ]]`, `$NAME` (ASCII word
//!   characters only: `${NAME}` is not part of the language and is an unknown lexeme), `"…"` or
//!   `'…'` (no escapes, no newlines), `/pattern/flags`, `null`, `true`/`false`, `==`, `=~`, `!=`,
//!   `!~`, `&&`, `||`. At most 99 tokens (GitLab's `MAX_TOKENS = 100` loop raises on the 100th).
//! - Parsing is GitLab's shunting-yard: `==`, `!=`, `=~`, `!~` bind tighter than `&&`, which binds
//!   tighter than `||`, all left-associative. Like GitLab it does not check that operators sit
//!   between their operands, so `$A $B ==` is accepted and means `$A == $B`.
//! - Values are null (an undefined variable, `null`, an input reference), strings, booleans and
//!   patterns. `&&`/`||` return one of their operands with Ruby's truthiness (only null and
//!   `false` are false: an empty string is true), and the whole expression holds when its value is
//!   "present" in Rails' sense: not null, not `false`, not a string of only whitespace.
//! - `==`/`!=` compare values (null is not the empty string); a boolean compared with a string
//!   compares as `"true"`/`"false"`.
//! - `=~`/`!~` match the left value's text (null is the empty string) against the right: a
//!   pattern literal; or a string (a variable's value or a quoted literal) that reads as
//!   `/pattern/flags` (after `\/` becomes `/`, on any one line of it); or, when the string is not
//!   a valid pattern, GitLab's fallback: the left text is a substring of the right string. A null
//!   or `false` right side makes `=~` false and `!~` true.
//!
//! Where berth differs, it fails closed (an [`ExprError`] from [`parse`]) instead of GitLab's
//! internal error or nonsense: an expression longer than [`MAX_EXPRESSION_BYTES`]; a pattern as
//! the left operand of `=~`/`!~`, or of `==`/`!=` against anything but a pattern (GitLab raises
//! `NoMethodError` or matches against an object's address); `true` possibly on the right of
//! `=~`/`!~` (GitLab raises `NoMethodError`).
//!
//! Regular expressions are RE2's syntax (GitLab compiles them with RE2), translated to the
//! `regex` crate's: `\d \s \w \b` and their negations stay ASCII as in RE2, escaped punctuation
//! is literal (so `\<` is `<`, not a word start), octal escapes, `\Q…\E`, a `{` that is not a
//! repetition is literal, repetition counts above 1000 and stacked repetitions are rejected,
//! flags are only `i m s U` (duplicates allowed). Not supported: `\C` (any byte). The `regex`
//! crate knows a few Unicode property names RE2 does not, and bounds nested repetitions by
//! compiled size ([`REGEX_SIZE_LIMIT`]) rather than RE2's product-of-counts check.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// The longest expression berth parses, in bytes. GitLab has no limit of its own beyond the size
/// of the configuration; this one keeps a hostile expression from costing more than it could mean.
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

/// GitLab's `Lexer::MAX_TOKENS`: its lexing loop runs this many times and raises when it has not
/// reached the end, so at most `MAX_TOKENS - 1` tokens are accepted.
const MAX_TOKENS: usize = 100;

/// The most memory one compiled regular expression may take (RE2's default `max_mem` is 8 MiB).
pub const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// RE2's largest repetition count (`{n,m}` with n or m above it is an error).
const MAX_REPEAT: u32 = 1000;

/// Why an expression cannot be used. The texts carry GitLab's own words where GitLab has them
/// (its configuration error is "invalid expression syntax"; the part after the colon is the
/// message its lexer or parser raised) and always where in the expression the problem is.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExprError {
    /// Longer than [`MAX_EXPRESSION_BYTES`] (a berth limit).
    #[error(
        "invalid expression syntax: the expression is {length} bytes long, more than the {limit} \
         bytes berth accepts"
    )]
    TooLong {
        /// The expression's length in bytes.
        length: usize,
        /// [`MAX_EXPRESSION_BYTES`].
        limit: usize,
    },
    /// Nothing but whitespace (GitLab's `StatementError`).
    #[error("invalid expression syntax: the expression is empty")]
    Empty,
    /// No lexeme matches at `position`.
    #[error("invalid expression syntax: Unknown lexeme found! at byte {position}: `{found}`")]
    UnknownLexeme {
        /// Byte offset in the expression.
        position: usize,
        /// The text from there (at most 20 characters).
        found: String,
    },
    /// More than `MAX_TOKENS - 1` tokens.
    #[error(
        "invalid expression syntax: Too many tokens! (at most {max} are allowed; the next one \
         starts at byte {position})",
        max = MAX_TOKENS - 1
    )]
    TooManyTokens {
        /// Byte offset of the first token over the limit.
        position: usize,
    },
    /// A `/pattern/flags` literal that is not a valid RE2 regular expression.
    #[error(
        "invalid expression syntax: Invalid regular expression! `{pattern}` at byte {position}: {reason}"
    )]
    InvalidRegularExpression {
        /// Byte offset of the literal.
        position: usize,
        /// The literal as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `)` with no `(` open before it.
    #[error(
        "invalid expression syntax: Unmatched parenthesis: the `)` at byte {position} closes nothing"
    )]
    UnmatchedParenthesis {
        /// Byte offset of the `)`.
        position: usize,
    },
    /// A `(` never closed (GitLab's parser then meets it as an operand).
    #[error(
        "invalid expression syntax: Unprocessable token found in parse tree: parenthesis_open \
         (the `(` at byte {position} is never closed)"
    )]
    UnclosedParenthesis {
        /// Byte offset of the `(`.
        position: usize,
    },
    /// An operator without two operands before it in GitLab's reverse Polish order.
    #[error(
        "invalid expression syntax: Invalid left operand: `{operator}` at byte {position} lacks an operand"
    )]
    MissingOperand {
        /// The operator as written.
        operator: &'static str,
        /// Byte offset of the operator.
        position: usize,
    },
    /// Operands not joined by an operator, such as `$A $B`.
    #[error(
        "invalid expression syntax: Unreachable nodes in parse tree: the part starting at byte \
         {position} is not joined to the rest by an operator"
    )]
    UnreachableNodes {
        /// Byte offset where the unjoined part starts.
        position: usize,
    },
    /// Only parentheses.
    #[error(
        "invalid expression syntax: Empty parse tree (the expression has parentheses and no value)"
    )]
    EmptyParseTree,
    /// An operand of a kind on which GitLab fails with an internal error (see the module docs).
    #[error(
        "invalid expression syntax: the {side} operand of `{operator}` at byte {position} can be \
         {kind}, which GitLab cannot evaluate there (it fails with an internal error)"
    )]
    UnsupportedOperand {
        /// `left` or `right`.
        side: &'static str,
        /// The operator as written.
        operator: &'static str,
        /// Byte offset of the operator.
        position: usize,
        /// `a /pattern/` or `true`.
        kind: &'static str,
    },
    /// One of berth's own lexeme patterns failed to compile (a bug; a unit test builds them).
    #[error("berth's expression lexer is broken: {0}")]
    Lexer(String),
}

/// A parsed expression, ready to evaluate against any set of variables.
#[derive(Debug, Clone)]
pub struct Expression {
    root: Node,
}

/// Parses `expression` as GitLab would, then evaluates it with `lookup` (a variable's value, or
/// `None` when it is not defined).
///
/// # Errors
/// The expression is not valid; see [`parse`].
pub fn evaluate(
    expression: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, ExprError> {
    Ok(parse(expression)?.evaluate(lookup))
}

/// Parses `expression`: everything GitLab's configuration check ("invalid expression syntax")
/// rejects is an error here, and so are the few operand kinds GitLab fails on internally.
///
/// # Errors
/// An [`ExprError`] naming the problem and where it is.
pub fn parse(expression: &str) -> Result<Expression, ExprError> {
    if expression.len() > MAX_EXPRESSION_BYTES {
        return Err(ExprError::TooLong {
            length: expression.len(),
            limit: MAX_EXPRESSION_BYTES,
        });
    }
    let lexicon = LEXICON
        .as_ref()
        .map_err(|error| ExprError::Lexer(error.to_string()))?;
    let tokens = lex(lexicon, expression)?;
    if tokens.is_empty() {
        return Err(ExprError::Empty);
    }
    let root = build_tree(to_reverse_polish(tokens)?)?;
    kinds(&root)?;
    Ok(Expression { root })
}

impl Expression {
    /// Whether the expression holds with these variables (`lookup` gives a variable's value, or
    /// `None` when it is not defined): GitLab's `Statement#truthful?`.
    #[must_use]
    pub fn evaluate(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        self.root.value(lookup).is_present()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equals,
    NotEquals,
    Matches,
    NotMatches,
    And,
    Or,
}

impl Operator {
    fn symbol(self) -> &'static str {
        match self {
            Self::Equals => "==",
            Self::NotEquals => "!=",
            Self::Matches => "=~",
            Self::NotMatches => "!~",
            Self::And => "&&",
            Self::Or => "||",
        }
    }

    /// GitLab's precedences: lower binds tighter; `(` is 901 so no operator pops it.
    fn precedence(self) -> u16 {
        match self {
            Self::Equals | Self::NotEquals | Self::Matches | Self::NotMatches => 10,
            Self::And => 11,
            Self::Or => 12,
        }
    }
}

const OPERATORS: [Operator; 6] = [
    Operator::Equals,
    Operator::Matches,
    Operator::NotEquals,
    Operator::NotMatches,
    Operator::And,
    Operator::Or,
];

#[derive(Debug, Clone, Copy)]
enum TokenKind<'s> {
    Open,
    Close,
    Input,
    Variable(&'s str),
    Text(&'s str),
    Pattern(&'s str),
    Null,
    Boolean(bool),
    Operator(Operator),
}

#[derive(Debug, Clone, Copy)]
struct Token<'s> {
    kind: TokenKind<'s>,
    position: usize,
}

/// GitLab's lexeme patterns, anchored at the current position. Ruby's `\w` and `\s` are ASCII,
/// so they are spelled out.
struct Lexicon {
    input: Regex,
    variable: Regex,
    text: Regex,
    pattern: Regex,
    boolean: Regex,
    /// `Gitlab::UntrustedRegexp::RubySyntax::PATTERN`: Ruby's `^`/`$` are line anchors.
    ruby_syntax: Regex,
}

static LEXICON: LazyLock<Result<Lexicon, regex::Error>> = LazyLock::new(|| {
    Ok(Lexicon {
        input: Regex::new(
            r"\A\$\[\[[ \t\r\n\x0B\x0C]*inputs\.([0-9A-Za-z_]+)[ \t\r\n\x0B\x0C]*\]\]",
        )?,
        variable: Regex::new(r"\A\$([0-9A-Za-z_]+)")?,
        text: Regex::new(r#"\A(?:"(.*?)"|'(.*?)')"#)?,
        pattern: Regex::new(r"\A/(?:[^/]|\\/)+[^\\]/[ismU]*")?,
        boolean: Regex::new(r"\A\b(?:true|false)\b")?,
        ruby_syntax: Regex::new(r"(?m)^/(.*)/([ismU]*)$")?,
    })
});

fn is_ruby_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

fn lex<'s>(lexicon: &Lexicon, expression: &'s str) -> Result<Vec<Token<'s>>, ExprError> {
    let mut tokens = Vec::new();
    let mut position = 0;
    loop {
        let rest = &expression[position..];
        let trimmed = rest.trim_start_matches(is_ruby_space);
        position += rest.len() - trimmed.len();
        if trimmed.is_empty() {
            return Ok(tokens);
        }
        let Some((kind, length)) = scan(lexicon, trimmed) else {
            return Err(ExprError::UnknownLexeme {
                position,
                found: trimmed.chars().take(20).collect(),
            });
        };
        // GitLab lexes the 100th token, then raises because its loop is over.
        if tokens.len() == MAX_TOKENS - 1 {
            return Err(ExprError::TooManyTokens { position });
        }
        tokens.push(Token { kind, position });
        position += length;
    }
}

/// The first lexeme, in GitLab's order, that matches at the start of `rest`, and its length.
fn scan<'s>(lexicon: &Lexicon, rest: &'s str) -> Option<(TokenKind<'s>, usize)> {
    let captured = |regex: &Regex| {
        regex.captures(rest).map(|captures| {
            let length = captures.get(0).map_or(0, |whole| whole.end());
            let group = captures
                .iter()
                .skip(1)
                .flatten()
                .next()
                .map_or("", |group| group.as_str());
            (group, length)
        })
    };
    if rest.starts_with('(') {
        return Some((TokenKind::Open, 1));
    }
    if rest.starts_with(')') {
        return Some((TokenKind::Close, 1));
    }
    if let Some((_, length)) = captured(&lexicon.input) {
        return Some((TokenKind::Input, length));
    }
    if let Some((name, length)) = captured(&lexicon.variable) {
        return Some((TokenKind::Variable(name), length));
    }
    if let Some((text, length)) = captured(&lexicon.text) {
        return Some((TokenKind::Text(text), length));
    }
    if let Some(literal) = lexicon.pattern.find(rest) {
        return Some((TokenKind::Pattern(literal.as_str()), literal.end()));
    }
    if rest.starts_with("null") {
        return Some((TokenKind::Null, 4));
    }
    if let Some(boolean) = lexicon.boolean.find(rest) {
        return Some((
            TokenKind::Boolean(boolean.as_str() == "true"),
            boolean.end(),
        ));
    }
    OPERATORS
        .into_iter()
        .find(|operator| rest.starts_with(operator.symbol()))
        .map(|operator| (TokenKind::Operator(operator), 2))
}

/// What GitLab's shunting-yard emits: an unclosed `(` stays in the output and fails later.
enum Reordered<'s> {
    Value(Token<'s>),
    Operator(Operator, usize),
    Open(usize),
}

enum Stacked {
    Operator(Operator, usize),
    Open(usize),
}

fn to_reverse_polish(tokens: Vec<Token<'_>>) -> Result<Vec<Reordered<'_>>, ExprError> {
    let mut output = Vec::with_capacity(tokens.len());
    let mut operators: Vec<Stacked> = Vec::new();
    for token in tokens {
        match token.kind {
            TokenKind::Operator(operator) => {
                while let Some(&Stacked::Operator(top, position)) = operators.last()
                    && top.precedence() <= operator.precedence()
                {
                    output.push(Reordered::Operator(top, position));
                    operators.pop();
                }
                operators.push(Stacked::Operator(operator, token.position));
            }
            TokenKind::Open => operators.push(Stacked::Open(token.position)),
            TokenKind::Close => {
                while let Some(&Stacked::Operator(top, position)) = operators.last() {
                    output.push(Reordered::Operator(top, position));
                    operators.pop();
                }
                if operators.pop().is_none() {
                    return Err(ExprError::UnmatchedParenthesis {
                        position: token.position,
                    });
                }
            }
            _ => output.push(Reordered::Value(token)),
        }
    }
    output.extend(operators.into_iter().rev().map(|stacked| match stacked {
        Stacked::Operator(operator, position) => Reordered::Operator(operator, position),
        Stacked::Open(position) => Reordered::Open(position),
    }));
    Ok(output)
}

#[derive(Debug, Clone)]
enum Node {
    Variable(String),
    Input,
    Text(String),
    Null,
    Boolean(bool),
    Pattern(Pattern),
    Operator {
        operator: Operator,
        position: usize,
        left: Box<Self>,
        right: Box<Self>,
    },
}

fn build_tree(reordered: Vec<Reordered<'_>>) -> Result<Node, ExprError> {
    // Each node with the byte offset where its first token starts.
    let mut results: Vec<(Node, usize)> = Vec::new();
    for item in reordered {
        match item {
            Reordered::Value(token) => results.push((value_node(token)?, token.position)),
            Reordered::Operator(operator, position) => {
                let right = results.pop();
                let left = results.pop();
                let (Some((left, left_start)), Some((right, right_start))) = (left, right) else {
                    return Err(ExprError::MissingOperand {
                        operator: operator.symbol(),
                        position,
                    });
                };
                let start = left_start.min(right_start);
                let node = Node::Operator {
                    operator,
                    position,
                    left: Box::new(left),
                    right: Box::new(right),
                };
                results.push((node, start));
            }
            Reordered::Open(position) => return Err(ExprError::UnclosedParenthesis { position }),
        }
    }
    let mut results = results.into_iter();
    match (results.next(), results.next()) {
        (Some((root, _)), None) => Ok(root),
        (Some(_), Some((_, position))) => Err(ExprError::UnreachableNodes { position }),
        (None, _) => Err(ExprError::EmptyParseTree),
    }
}

fn value_node(token: Token<'_>) -> Result<Node, ExprError> {
    Ok(match token.kind {
        TokenKind::Variable(name) => Node::Variable(name.to_owned()),
        TokenKind::Input => Node::Input,
        TokenKind::Text(text) => Node::Text(text.to_owned()),
        TokenKind::Null => Node::Null,
        TokenKind::Boolean(value) => Node::Boolean(value),
        TokenKind::Pattern(literal) => {
            Node::Pattern(Pattern::from_ruby_syntax(literal).map_err(|reason| {
                ExprError::InvalidRegularExpression {
                    position: token.position,
                    pattern: literal.to_owned(),
                    reason,
                }
            })?)
        }
        // Parentheses and operators never reach the output as values.
        TokenKind::Open | TokenKind::Close | TokenKind::Operator(_) => Node::Null,
    })
}

/// The kinds of value a node can evaluate to, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kinds(u8);

impl Kinds {
    const NULL: Self = Self(1);
    const TEXT: Self = Self(2);
    const TRUE: Self = Self(4);
    const FALSE: Self = Self(8);
    const PATTERN: Self = Self(16);
    const NONE: Self = Self(0);
    const BOOLEAN: Self = Self(4 | 8);
    const TRUTHY: Self = Self(2 | 4 | 16);
    const FALSY: Self = Self(1 | 8);

    fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

/// What a node can evaluate to, rejecting the operand kinds GitLab fails on.
fn kinds(node: &Node) -> Result<Kinds, ExprError> {
    Ok(match node {
        Node::Variable(_) => Kinds::NULL.union(Kinds::TEXT),
        Node::Input | Node::Null => Kinds::NULL,
        Node::Text(_) => Kinds::TEXT,
        Node::Boolean(true) => Kinds::TRUE,
        Node::Boolean(false) => Kinds::FALSE,
        Node::Pattern(_) => Kinds::PATTERN,
        Node::Operator {
            operator,
            position,
            left,
            right,
        } => {
            let (left, right) = (kinds(left)?, kinds(right)?);
            let unsupported = |side, kind| ExprError::UnsupportedOperand {
                side,
                operator: operator.symbol(),
                position: *position,
                kind,
            };
            match operator {
                Operator::Equals | Operator::NotEquals => {
                    // GitLab's pattern `==` calls `.source` on the other side.
                    if left.intersects(Kinds::PATTERN) && right != Kinds::PATTERN {
                        return Err(unsupported("left", "a /pattern/"));
                    }
                    Kinds::BOOLEAN
                }
                Operator::Matches | Operator::NotMatches => {
                    if left.intersects(Kinds::PATTERN) {
                        return Err(unsupported("left", "a /pattern/"));
                    }
                    if right.intersects(Kinds::TRUE) {
                        return Err(unsupported("right", "true"));
                    }
                    Kinds::BOOLEAN
                }
                Operator::And => {
                    let reached = if left.intersects(Kinds::TRUTHY) {
                        right
                    } else {
                        Kinds::NONE
                    };
                    left.intersection(Kinds::FALSY).union(reached)
                }
                Operator::Or => {
                    let reached = if left.intersects(Kinds::FALSY) {
                        right
                    } else {
                        Kinds::NONE
                    };
                    left.intersection(Kinds::TRUTHY).union(reached)
                }
            }
        }
    })
}

/// A compiled `/pattern/flags`.
#[derive(Debug, Clone)]
struct Pattern {
    /// RE2's source as GitLab builds it (`(?flags)` then the pattern), which GitLab's `==` on two
    /// patterns compares.
    source: String,
    regex: Regex,
}

impl Pattern {
    /// GitLab's `Lexeme::Pattern.new` then `RubySyntax.fabricate!`: `\/` becomes `/`, then the
    /// first line reading `/pattern/flags` is compiled as RE2 with the flags in front.
    fn from_ruby_syntax(literal: &str) -> Result<Self, String> {
        let lexicon = LEXICON.as_ref().map_err(ToString::to_string)?;
        let unescaped = literal.replace("\\/", "/");
        let captures = lexicon
            .ruby_syntax
            .captures(&unescaped)
            .ok_or_else(|| "it is not of the form /pattern/flags".to_owned())?;
        let body = captures.get(1).map_or("", |body| body.as_str());
        let flags = captures.get(2).map_or("", |flags| flags.as_str());
        let source = if flags.is_empty() {
            body.to_owned()
        } else {
            format!("(?{flags}){body}")
        };
        let mut unique_flags = String::new();
        for flag in flags.chars() {
            if !unique_flags.contains(flag) {
                unique_flags.push(flag);
            }
        }
        let translated = translate_re2(body)?;
        let translated = if unique_flags.is_empty() {
            translated
        } else {
            format!("(?{unique_flags}){translated}")
        };
        let regex = RegexBuilder::new(&translated)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|error| regex_error_reason(&error))?;
        Ok(Self { source, regex })
    }
}

fn regex_error_reason(error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(limit) => {
            format!("it compiles to more than the {limit} bytes berth allows")
        }
        other => {
            let text = other.to_string();
            text.lines()
                .find_map(|line| line.strip_prefix("error: "))
                .map_or_else(|| text.replace('\n', " "), ToOwned::to_owned)
        }
    }
}

/// RE2's `\d`, `\s`, `\w` (ASCII, unlike the `regex` crate's), as class contents.
fn perl_class(letter: char) -> &'static str {
    match letter.to_ascii_lowercase() {
        'd' => "0-9",
        's' => "\\t\\n\\x0C\\r\\x20",
        _ => "0-9A-Za-z_",
    }
}

fn push_literal(out: &mut String, c: char) {
    out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
}

/// Rewrites an RE2 pattern into the `regex` crate's syntax with RE2's meaning, or says why RE2
/// would reject it.
fn translate_re2(re2: &str) -> Result<String, String> {
    let chars: Vec<char> = re2.chars().collect();
    let mut out = String::with_capacity(re2.len() + 16);
    let mut index = 0;
    let mut after_repetition = false;
    while let Some(&c) = chars.get(index) {
        let mut repetition = false;
        match c {
            '\\' => index = translate_escape(&chars, index + 1, &mut out, false)?,
            '[' => index = translate_class(&chars, index, &mut out)?,
            '*' | '+' | '?' => {
                if after_repetition {
                    return Err(format!("bad repetition operator: {c} after a repetition"));
                }
                out.push(c);
                index += 1;
                if chars.get(index) == Some(&'?') {
                    out.push('?');
                    index += 1;
                }
                repetition = true;
            }
            '{' => match counted_repetition(&chars, index) {
                Some((low, high, end)) => {
                    if after_repetition {
                        return Err("bad repetition operator: {…} after a repetition".to_owned());
                    }
                    if low > MAX_REPEAT || high.is_some_and(|high| high > MAX_REPEAT) {
                        return Err(format!(
                            "bad repetition operator: counts above {MAX_REPEAT} are not allowed"
                        ));
                    }
                    if high.is_some_and(|high| high < low) {
                        return Err("bad repetition operator: {n,m} with m below n".to_owned());
                    }
                    out.extend(&chars[index..end]);
                    index = end;
                    if chars.get(index) == Some(&'?') {
                        out.push('?');
                        index += 1;
                    }
                    repetition = true;
                }
                None => {
                    out.push_str("\\{");
                    index += 1;
                }
            },
            '}' => {
                out.push_str("\\}");
                index += 1;
            }
            '(' if chars.get(index + 1) == Some(&'?') => {
                index = translate_group_flags(&chars, index, &mut out)?;
            }
            _ => {
                out.push(c);
                index += 1;
            }
        }
        after_repetition = repetition;
    }
    Ok(out)
}

/// `{n}`, `{n,}` or `{n,m}` at `start` (RE2 disallows leading zeros): the counts and the index
/// after `}`. Anything else is a literal `{` in RE2.
fn counted_repetition(chars: &[char], start: usize) -> Option<(u32, Option<u32>, usize)> {
    fn number(chars: &[char], mut index: usize) -> Option<(u32, usize)> {
        let begin = index;
        let mut value: u32 = 0;
        while let Some(digit) = chars.get(index).and_then(|c| c.to_digit(10)) {
            value = value.saturating_mul(10).saturating_add(digit);
            index += 1;
        }
        let leading_zero = chars.get(begin) == Some(&'0') && index - begin > 1;
        (index > begin && !leading_zero).then_some((value, index))
    }
    let (low, mut index) = number(chars, start + 1)?;
    let high = if chars.get(index) == Some(&',') {
        index += 1;
        if chars.get(index) == Some(&'}') {
            None
        } else {
            let (high, after) = number(chars, index)?;
            index = after;
            Some(high)
        }
    } else {
        Some(low)
    };
    (chars.get(index) == Some(&'}')).then_some((low, high, index + 1))
}

/// `(?flags)` or `(?flags:` at `start`, rewritten with each flag once (RE2 allows repeats, the
/// `regex` crate does not); named groups pass through.
fn translate_group_flags(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut index = start + 2;
    if let Some('P' | '<') = chars.get(index) {
        out.push_str("(?");
        return Ok(index);
    }
    let (mut on, mut off) = (String::new(), String::new());
    let (mut negated, mut saw_flag) = (false, false);
    loop {
        let Some(&c) = chars.get(index) else {
            return Err("missing closing ) after (?".to_owned());
        };
        index += 1;
        match c {
            'i' | 'm' | 's' | 'U' => {
                saw_flag = true;
                let (add, remove) = if negated {
                    (&mut off, &mut on)
                } else {
                    (&mut on, &mut off)
                };
                remove.retain(|flag| flag != c);
                if !add.contains(c) {
                    add.push(c);
                }
            }
            '-' if !negated => {
                negated = true;
                saw_flag = false;
            }
            ':' | ')' => {
                if negated && !saw_flag {
                    return Err("invalid or unsupported Perl syntax: (?- without a flag".to_owned());
                }
                let terminator = c;
                if on.is_empty() && off.is_empty() {
                    if terminator == ':' {
                        out.push_str("(?:");
                    }
                } else {
                    out.push_str("(?");
                    out.push_str(&on);
                    if !off.is_empty() {
                        out.push('-');
                        out.push_str(&off);
                    }
                    out.push(terminator);
                }
                return Ok(index);
            }
            other => {
                let written: String = chars[start..index].iter().collect();
                return Err(format!(
                    "invalid or unsupported Perl syntax: `{written}` ({other:?} is not one of RE2's \
                     flags i, m, s, U)"
                ));
            }
        }
    }
}

/// A character class from its `[` at `start` to past its `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut index = start + 1;
    out.push('[');
    if chars.get(index) == Some(&'^') {
        out.push('^');
        index += 1;
    }
    let mut first = true;
    let mut previous_dash = false;
    loop {
        let Some(&c) = chars.get(index) else {
            return Err("missing closing ] of a character class".to_owned());
        };
        let mut dash = false;
        match c {
            ']' if !first => {
                out.push(']');
                return Ok(index + 1);
            }
            '[' if chars.get(index + 1) == Some(&':') => {
                let close = (index + 2..chars.len().saturating_sub(1))
                    .find(|&at| chars[at] == ':' && chars[at + 1] == ']');
                if let Some(close) = close {
                    out.extend(&chars[index..close + 2]);
                    index = close + 2;
                } else {
                    out.push_str("\\[");
                    index += 1;
                }
            }
            '\\' => index = translate_escape(chars, index + 1, out, true)?,
            ']' | '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                index += 1;
            }
            '-' if previous_dash => {
                out.push_str("\\-");
                index += 1;
            }
            _ => {
                dash = c == '-';
                out.push(c);
                index += 1;
            }
        }
        previous_dash = dash;
        first = false;
    }
}

/// The escape whose letter is at `index` (just after the backslash); returns the index after it.
fn translate_escape(
    chars: &[char],
    index: usize,
    out: &mut String,
    in_class: bool,
) -> Result<usize, String> {
    let Some(&c) = chars.get(index) else {
        return Err("trailing \\".to_owned());
    };
    match c {
        'd' | 's' | 'w' if in_class => out.push_str(perl_class(c)),
        'd' | 's' | 'w' => {
            out.push('[');
            out.push_str(perl_class(c));
            out.push(']');
        }
        'D' | 'S' | 'W' => {
            out.push_str("[^");
            out.push_str(perl_class(c));
            out.push(']');
        }
        'b' | 'B' if !in_class => {
            out.push_str("(?-u:\\");
            out.push(c);
            out.push(')');
        }
        'A' | 'z' if !in_class => {
            out.push('\\');
            out.push(c);
        }
        'Q' if !in_class => {
            let mut at = index + 1;
            while let Some(&literal) = chars.get(at) {
                if literal == '\\' && chars.get(at + 1) == Some(&'E') {
                    return Ok(at + 2);
                }
                push_literal(out, literal);
                at += 1;
            }
            return Ok(at);
        }
        'C' => return Err("\\C (any byte) is not supported by berth".to_owned()),
        'p' | 'P' => {
            out.push('\\');
            out.push(c);
            let mut at = index + 1;
            if chars.get(at) == Some(&'{') {
                while let Some(&part) = chars.get(at) {
                    out.push(part);
                    at += 1;
                    if part == '}' {
                        break;
                    }
                }
            } else if let Some(&name) = chars.get(at) {
                out.push(name);
                at += 1;
            }
            return Ok(at);
        }
        'x' | 'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
            out.push('\\');
            out.push(c);
        }
        '0'..='7' => {
            let mut code = c.to_digit(8).unwrap_or(0);
            let mut at = index + 1;
            let next_octal = |at: usize| chars.get(at).and_then(|d| d.to_digit(8));
            if c != '0' && next_octal(at).is_none() {
                return Err(format!(
                    "invalid escape sequence: \\{c} (backreferences are not supported)"
                ));
            }
            for _ in 0..2 {
                let Some(digit) = next_octal(at) else { break };
                code = code * 8 + digit;
                at += 1;
            }
            out.push_str(&format!("\\x{{{code:X}}}"));
            return Ok(at);
        }
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => push_literal(out, c),
        other => return Err(format!("invalid escape sequence: \\{other}")),
    }
    Ok(index + 1)
}

/// A value during evaluation: Ruby's nil, a String, true/false or an `UntrustedRegexp`.
#[derive(Debug)]
enum Value<'e> {
    Null,
    Text(Cow<'e, str>),
    Boolean(bool),
    Pattern(&'e Pattern),
}

impl Value<'_> {
    /// Ruby's truthiness, which `&&` and `||` use.
    fn is_truthy(&self) -> bool {
        !matches!(self, Self::Null | Self::Boolean(false))
    }

    /// Rails' `present?`, which decides the whole expression.
    fn is_present(&self) -> bool {
        match self {
            Self::Null => false,
            Self::Text(text) => !text.chars().all(char::is_whitespace),
            Self::Boolean(value) => *value,
            Self::Pattern(_) => true,
        }
    }

    /// `to_s`, the text `=~` matches.
    fn text(&self) -> &str {
        match self {
            Self::Text(text) => text,
            Self::Boolean(true) => "true",
            Self::Boolean(false) => "false",
            // A pattern on the left is rejected by `parse`.
            Self::Null | Self::Pattern(_) => "",
        }
    }
}

fn equals(left: &Value<'_>, right: &Value<'_>) -> bool {
    match (left, right) {
        (Value::Null, Value::Null) => true,
        (Value::Text(left), Value::Text(right)) => left == right,
        (Value::Boolean(left), Value::Boolean(right)) => left == right,
        (Value::Boolean(_), Value::Text(text)) => text == left.text(),
        (Value::Text(text), Value::Boolean(_)) => text == right.text(),
        (Value::Pattern(left), Value::Pattern(right)) => left.source == right.source,
        _ => false,
    }
}

/// GitLab's `=~` once the right side is neither null nor a boolean.
fn matches(text: &str, right: &Value<'_>) -> bool {
    match right {
        Value::Pattern(pattern) => pattern.regex.is_match(text),
        Value::Text(candidate) => match Pattern::from_ruby_syntax(candidate) {
            Ok(pattern) => pattern.regex.is_match(text),
            Err(_) => candidate.contains(text),
        },
        // Null and false are handled by the caller; true is rejected by `parse`.
        Value::Null | Value::Boolean(_) => false,
    }
}

impl Node {
    fn value<'e>(&'e self, lookup: &dyn Fn(&str) -> Option<String>) -> Value<'e> {
        match self {
            Self::Variable(name) => {
                lookup(name).map_or(Value::Null, |value| Value::Text(value.into()))
            }
            Self::Input | Self::Null => Value::Null,
            Self::Text(text) => Value::Text(Cow::Borrowed(text)),
            Self::Boolean(value) => Value::Boolean(*value),
            Self::Pattern(pattern) => Value::Pattern(pattern),
            Self::Operator {
                operator,
                left,
                right,
                ..
            } => {
                let left = left.value(lookup);
                match operator {
                    Operator::And if !left.is_truthy() => left,
                    Operator::Or if left.is_truthy() => left,
                    Operator::And | Operator::Or => right.value(lookup),
                    Operator::Equals => Value::Boolean(equals(&left, &right.value(lookup))),
                    Operator::NotEquals => Value::Boolean(!equals(&left, &right.value(lookup))),
                    Operator::Matches | Operator::NotMatches => {
                        let right = right.value(lookup);
                        let matched = if right.is_truthy() {
                            matches(left.text(), &right)
                        } else {
                            false
                        };
                        let negate = *operator == Operator::NotMatches;
                        Value::Boolean(matched != negate)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables of GitLab's own `statement_spec.rb`, plus a few for the docs' examples.
    fn variables(name: &str) -> Option<String> {
        let value = match name {
            "PRESENT_VARIABLE" => "my variable",
            "PATH_VARIABLE" => "a/path/variable/value",
            "FULL_PATH_VARIABLE" => "/a/full/path/variable/value",
            "EMPTY_VARIABLE" | "EMPTY" => "",
            "BLANK" => " \t\u{3000}",
            "teststring" => "abcde",
            "pattern1" => "/^ab.*/",
            "pattern2" => "/^at.*/",
            "CI_PIPELINE_SOURCE" => "merge_request_event",
            "CI_COMMIT_BRANCH" => "feature/login",
            "CI_DEFAULT_BRANCH" => "main",
            "CI_COMMIT_MESSAGE" => "Fix login\n\nSKIP-TESTS for now",
            "A" => "a",
            "B" => "b",
            "SAME_AS_A" => "a",
            "TRUE_TEXT" => "true",
            "MULTILINE_PATTERN" => "not a pattern\n/^ab/i",
            "ESCAPED_PATTERN" => "/^a\\/b$/",
            "BROKEN_PATTERN" => "/ab(/",
            _ => return None,
        };
        Some(value.to_owned())
    }

    fn holds(expression: &str) -> bool {
        match evaluate(expression, &variables) {
            Ok(result) => result,
            Err(error) => panic!("{expression:?} does not parse: {error}"),
        }
    }

    fn error(expression: &str) -> ExprError {
        match parse(expression) {
            Ok(parsed) => panic!("{expression:?} parses as {parsed:?}"),
            Err(error) => error,
        }
    }

    /// The value GitLab's `Statement#evaluate` returns, for its own table.
    #[derive(Debug, PartialEq)]
    enum Shown {
        Null,
        Text(&'static str),
        Boolean(bool),
    }

    fn shown(expression: &str) -> String {
        let parsed = match parse(expression) {
            Ok(parsed) => parsed,
            Err(error) => panic!("{expression:?} does not parse: {error}"),
        };
        match parsed.root.value(&variables) {
            Value::Null => format!("{:?}", Shown::Null),
            Value::Text(text) => format!("Text({text:?})"),
            Value::Boolean(value) => format!("{:?}", Shown::Boolean(value)),
            Value::Pattern(pattern) => format!("Pattern({})", pattern.source),
        }
    }

    #[test]
    fn gitlab_statement_spec_evaluate_table() {
        use Shown::{Boolean, Null, Text};
        let table: &[(&str, Shown)] = &[
            (r#"$PRESENT_VARIABLE == "my variable""#, Boolean(true)),
            (r#""my variable" == $PRESENT_VARIABLE"#, Boolean(true)),
            ("$PRESENT_VARIABLE == null", Boolean(false)),
            ("$EMPTY_VARIABLE == null", Boolean(false)),
            (r#""" == $EMPTY_VARIABLE"#, Boolean(true)),
            ("$EMPTY_VARIABLE", Text("")),
            ("$UNDEFINED_VARIABLE == null", Boolean(true)),
            ("null == $UNDEFINED_VARIABLE", Boolean(true)),
            ("$PRESENT_VARIABLE", Text("my variable")),
            ("$UNDEFINED_VARIABLE", Null),
            ("$PRESENT_VARIABLE =~ /var.*e$/", Boolean(true)),
            (r"$PRESENT_VARIABLE =~ /va\r.*e$/", Boolean(false)),
            (r"$PRESENT_VARIABLE =~ /va\/r.*e$/", Boolean(false)),
            ("$PRESENT_VARIABLE =~ /^var.*/", Boolean(false)),
            ("$EMPTY_VARIABLE =~ /var.*/", Boolean(false)),
            ("$UNDEFINED_VARIABLE =~ /var.*/", Boolean(false)),
            ("$PRESENT_VARIABLE =~ /VAR.*/i", Boolean(true)),
            (r"$PATH_VARIABLE =~ /path\/variable/", Boolean(true)),
            (
                r"$FULL_PATH_VARIABLE =~ /^\/a\/full\/path\/variable\/value$/",
                Boolean(true),
            ),
            (r#"$PRESENT_VARIABLE != "my variable""#, Boolean(false)),
            (r#""my variable" != $PRESENT_VARIABLE"#, Boolean(false)),
            ("$PRESENT_VARIABLE != null", Boolean(true)),
            ("$EMPTY_VARIABLE != null", Boolean(true)),
            (r#""" != $EMPTY_VARIABLE"#, Boolean(false)),
            ("$UNDEFINED_VARIABLE != null", Boolean(false)),
            ("null != $UNDEFINED_VARIABLE", Boolean(false)),
            ("$PRESENT_VARIABLE !~ /var.*e$/", Boolean(false)),
            ("$PRESENT_VARIABLE !~ /^var.*/", Boolean(true)),
            (r"$PRESENT_VARIABLE !~ /^v\ar.*/", Boolean(true)),
            (r"$PRESENT_VARIABLE !~ /^v\/ar.*/", Boolean(true)),
            ("$EMPTY_VARIABLE !~ /var.*/", Boolean(true)),
            ("$UNDEFINED_VARIABLE !~ /var.*/", Boolean(true)),
            ("$PRESENT_VARIABLE !~ /VAR.*/i", Boolean(false)),
            (r#"$PRESENT_VARIABLE && "string""#, Text("string")),
            (
                "$PRESENT_VARIABLE && $PRESENT_VARIABLE",
                Text("my variable"),
            ),
            ("$PRESENT_VARIABLE && $EMPTY_VARIABLE", Text("")),
            ("$PRESENT_VARIABLE && null", Null),
            (r#""string" && $PRESENT_VARIABLE"#, Text("my variable")),
            ("$EMPTY_VARIABLE && $PRESENT_VARIABLE", Text("my variable")),
            ("null && $PRESENT_VARIABLE", Null),
            (r#"$EMPTY_VARIABLE && "string""#, Text("string")),
            ("$EMPTY_VARIABLE && $EMPTY_VARIABLE", Text("")),
            (r#""string" && $EMPTY_VARIABLE"#, Text("")),
            (r#""string" && null"#, Null),
            (r#"null && "string""#, Null),
            (r#""string" && "string""#, Text("string")),
            ("null && null", Null),
            (
                "$PRESENT_VARIABLE =~ /my var/ && $EMPTY_VARIABLE =~ /nope/",
                Boolean(false),
            ),
            (
                r#"$EMPTY_VARIABLE == "" && $PRESENT_VARIABLE"#,
                Text("my variable"),
            ),
            (
                r#"$EMPTY_VARIABLE == "" && $PRESENT_VARIABLE != "nope""#,
                Boolean(true),
            ),
            ("$PRESENT_VARIABLE && $UNDEFINED_VARIABLE", Null),
            ("$UNDEFINED_VARIABLE && $EMPTY_VARIABLE", Null),
            ("$UNDEFINED_VARIABLE && $PRESENT_VARIABLE", Null),
            (
                r"$FULL_PATH_VARIABLE =~ /^\/a\/full\/path\/variable\/value$/ && $PATH_VARIABLE =~ /path\/variable/",
                Boolean(true),
            ),
            (
                r"$FULL_PATH_VARIABLE =~ /^\/a\/bad\/path\/variable\/value$/ && $PATH_VARIABLE =~ /path\/variable/",
                Boolean(false),
            ),
            (
                r"$FULL_PATH_VARIABLE =~ /^\/a\/full\/path\/variable\/value$/ && $PATH_VARIABLE =~ /bad\/path\/variable/",
                Boolean(false),
            ),
            (
                r"$FULL_PATH_VARIABLE =~ /^\/a\/bad\/path\/variable\/value$/ || $PATH_VARIABLE =~ /path\/variable/",
                Boolean(true),
            ),
            (
                r"$FULL_PATH_VARIABLE =~ /^\/a\/bad\/path\/variable\/value$/ || $PATH_VARIABLE =~ /bad\/path\/variable/",
                Boolean(false),
            ),
            (
                "$PRESENT_VARIABLE =~ /my var/ || $EMPTY_VARIABLE =~ /nope/",
                Boolean(true),
            ),
            (
                r#"$EMPTY_VARIABLE == "" || $PRESENT_VARIABLE"#,
                Boolean(true),
            ),
            (
                r#"$PRESENT_VARIABLE != "nope" || $EMPTY_VARIABLE == """#,
                Boolean(true),
            ),
            (
                r#"$PRESENT_VARIABLE && null || $EMPTY_VARIABLE == """#,
                Boolean(true),
            ),
            (
                "$PRESENT_VARIABLE || $UNDEFINED_VARIABLE",
                Text("my variable"),
            ),
            (
                "$UNDEFINED_VARIABLE || $PRESENT_VARIABLE",
                Text("my variable"),
            ),
            (
                "$UNDEFINED_VARIABLE == null || $PRESENT_VARIABLE",
                Boolean(true),
            ),
            (
                "$PRESENT_VARIABLE || $UNDEFINED_VARIABLE == null",
                Text("my variable"),
            ),
            ("($PRESENT_VARIABLE)", Text("my variable")),
            ("(($PRESENT_VARIABLE))", Text("my variable")),
            (
                r#"(($PRESENT_VARIABLE && null) || $EMPTY_VARIABLE == "")"#,
                Boolean(true),
            ),
            (
                r#"($PRESENT_VARIABLE) && (null || $EMPTY_VARIABLE == "")"#,
                Boolean(true),
            ),
            (r#"("string" || "test") == "string""#, Boolean(true)),
            (r#"(null || ("test" == "string"))"#, Boolean(false)),
            (r#"("string" == ("test" && "string"))"#, Boolean(true)),
            (r#"("string" == ("test" || "string"))"#, Boolean(false)),
            (r#"("string" == "test" || "string")"#, Text("string")),
            (
                r#"("string" == ("string" || (("1" == "1") && ("2" == "3"))))"#,
                Boolean(true),
            ),
        ];
        for (expression, expected) in table {
            let expected = match expected {
                Text(text) => format!("Text({text:?})"),
                other => format!("{other:?}"),
            };
            assert_eq!(shown(expression), expected, "{expression}");
        }
    }

    #[test]
    fn gitlab_statement_spec_truthful_table() {
        assert!(holds(r#"$PRESENT_VARIABLE == "my variable""#));
        assert!(!holds("$PRESENT_VARIABLE == 'no match'"));
        assert!(holds("$UNDEFINED_VARIABLE == null"));
        assert!(holds("$PRESENT_VARIABLE"));
        assert!(!holds("$UNDEFINED_VARIABLE"));
        assert!(!holds("$EMPTY_VARIABLE"));
        assert!(holds("$PRESENT_VARIABLE =~ /var.*/"));
        assert!(!holds("$UNDEFINED_VARIABLE =~ /var.*/"));
        assert!(!holds("$PRESENT_VARIABLE !~ /var.*/"));
        assert!(holds("$UNDEFINED_VARIABLE !~ /var.*/"));
    }

    #[test]
    fn gitlab_invalid_assignment_is_an_unknown_lexeme() {
        assert_eq!(
            error("$INVALID = 1"),
            ExprError::UnknownLexeme {
                position: 9,
                found: "= 1".to_owned()
            }
        );
    }

    #[test]
    fn docs_pipeline_source_equals() {
        assert!(holds(r#"$CI_PIPELINE_SOURCE == "merge_request_event""#));
        assert!(!holds(r#"$CI_PIPELINE_SOURCE == "push""#));
    }

    #[test]
    fn docs_single_and_double_quotes_are_both_strings() {
        assert!(holds("$CI_PIPELINE_SOURCE == 'merge_request_event'"));
        assert!(holds(r#"$CI_PIPELINE_SOURCE != "schedule""#));
    }

    #[test]
    fn docs_branch_matches_anchored_pattern() {
        assert!(holds("$CI_COMMIT_BRANCH =~ /^feature/"));
        assert!(!holds("$CI_COMMIT_BRANCH =~ /^release/"));
    }

    #[test]
    fn docs_case_insensitive_flag() {
        assert!(holds("$CI_COMMIT_MESSAGE =~ /skip-tests/i"));
        assert!(!holds("$CI_COMMIT_MESSAGE =~ /skip-tests/"));
    }

    #[test]
    fn docs_parentheses_group_before_and() {
        assert!(holds("($A || $UNDEFINED) && $B"));
        assert!(!holds("($A || $B) && $UNDEFINED"));
        // Without parentheses `&&` binds first: $A || ($B && $UNDEFINED).
        assert!(holds("$A || $B && $UNDEFINED"));
    }

    #[test]
    fn docs_and_binds_tighter_than_or() {
        assert!(holds("$UNDEFINED && $A || $B"));
        assert!(!holds("$UNDEFINED && ($A || $B)"));
    }

    #[test]
    fn docs_null_compares_definedness() {
        assert!(holds("$UNDEFINED == null"));
        assert!(!holds("$EMPTY == null"));
        assert!(holds("$EMPTY != null"));
        assert!(holds(r#"$EMPTY == """#));
        assert!(!holds(r#"$UNDEFINED == """#));
    }

    #[test]
    fn docs_two_variables_compare_values() {
        assert!(holds("$A == $SAME_AS_A"));
        assert!(!holds("$A == $B"));
        assert!(holds("$A != $B"));
        assert!(holds("$CI_COMMIT_BRANCH != $CI_DEFAULT_BRANCH"));
        assert!(holds("$UNDEFINED == $ALSO_UNDEFINED"));
    }

    #[test]
    fn docs_variable_holding_a_pattern_is_a_pattern() {
        assert!(holds("$teststring =~ $pattern1"));
        assert!(!holds("$teststring =~ $pattern2"));
        assert!(holds("$teststring !~ $pattern2"));
    }

    #[test]
    fn gitlab_pattern_variable_spec_rows() {
        assert!(holds(r#"$teststring =~ "abcde""#));
        assert!(holds("$teststring =~ $teststring"));
    }

    #[test]
    fn docs_variables_inside_patterns_are_not_resolved() {
        assert!(!holds("$A =~ /$A/"));
        assert!(holds(r#""x$A" =~ /\$A/"#));
    }

    #[test]
    fn docs_string_right_of_match_is_a_substring_test() {
        assert!(holds(r#""23" =~ "1234""#));
        assert!(!holds(r#""23" =~ /1234/"#));
        assert!(holds(r#""1234" !~ "23""#));
    }

    #[test]
    fn lone_variable_is_truthy_when_defined_and_not_blank() {
        assert!(holds("$A"));
        assert!(!holds("$EMPTY"));
        assert!(!holds("$BLANK"));
        assert!(!holds("$UNDEFINED"));
    }

    #[test]
    fn lone_literals_follow_present() {
        assert!(holds(r#""string""#));
        assert!(!holds(r#""""#));
        assert!(!holds("'  '"));
        assert!(!holds("null"));
        assert!(holds("true"));
        assert!(!holds("false"));
        assert!(holds("/pattern/"));
    }

    #[test]
    fn empty_string_is_truthy_inside_or_but_not_at_the_end() {
        // Ruby's `""` is true, so `||` stops at it, and `present?` then says no.
        assert!(!holds("$EMPTY || $A"));
        assert!(holds("$UNDEFINED || $A"));
    }

    #[test]
    fn undefined_left_of_match_is_the_empty_string() {
        assert!(!holds("$UNDEFINED =~ /ab/"));
        assert!(holds("$UNDEFINED =~ /^$/"));
        assert!(holds(r#"$UNDEFINED =~ "anything""#));
    }

    #[test]
    fn null_or_false_right_of_match() {
        assert!(!holds("$A =~ $UNDEFINED"));
        assert!(holds("$A !~ $UNDEFINED"));
        assert!(!holds("$A =~ null"));
        assert!(holds("$A !~ false"));
    }

    #[test]
    fn booleans_compare_with_their_text() {
        assert!(holds("$TRUE_TEXT == true"));
        assert!(holds("true == $TRUE_TEXT"));
        assert!(!holds("$TRUE_TEXT == false"));
        assert!(holds("($A == $A) == true"));
        assert!(!holds("true == null"));
        assert!(holds("($A == $A) =~ /^tr/"));
    }

    #[test]
    fn patterns_compare_by_source() {
        assert!(holds("/ab/i == /ab/i"));
        assert!(!holds("/ab/ == /ab/i"));
        assert!(!holds("$A == /ab/"));
    }

    #[test]
    fn escaped_slashes_in_pattern_literals() {
        assert!(holds(r"$PATH_VARIABLE =~ /^a\/path\//"));
        assert!(holds(
            r"$FULL_PATH_VARIABLE =~ /\\/path\\/variable\\/value$/"
        ));
    }

    #[test]
    fn pattern_literal_flags_m_s_and_u() {
        assert!(holds("$CI_COMMIT_MESSAGE =~ /^SKIP/m"));
        assert!(!holds("$CI_COMMIT_MESSAGE =~ /^SKIP/"));
        assert!(!holds("$CI_COMMIT_MESSAGE =~ /login.SKIP/s"));
        assert!(holds("$CI_COMMIT_MESSAGE =~ /login..SKIP/s"));
        assert!(!holds("$CI_COMMIT_MESSAGE =~ /login..SKIP/"));
        assert!(holds("$teststring =~ /^a.*?e$/U"));
        assert!(holds("$teststring =~ /ABC/ii"));
    }

    #[test]
    fn variable_pattern_is_read_from_any_line_with_escaped_slashes() {
        assert!(holds("$teststring =~ $MULTILINE_PATTERN"));
        assert!(holds(r#""a/b" =~ $ESCAPED_PATTERN"#));
    }

    #[test]
    fn broken_variable_pattern_falls_back_to_substring() {
        assert!(!holds("$teststring =~ $BROKEN_PATTERN"));
        assert!(holds(r#""ab(" =~ $BROKEN_PATTERN"#));
    }

    #[test]
    fn re2_perl_classes_are_ascii() {
        assert!(!holds(r#""é" =~ /^\w$/"#));
        assert!(!holds(r#""٣" =~ /\d/"#));
        assert!(holds(r#""é" =~ /^\W$/"#));
        assert!(holds(r#""a_1" =~ /^[\w]+$/"#));
        assert!(!holds(r#""é" =~ /^[\w]$/"#));
        assert!(holds(r#""é" =~ /^[x\D]$/"#));
        assert!(!holds(r#""é" =~ /\bx/"#));
        assert!(holds(r#""éx" =~ /\bx/"#));
    }

    #[test]
    fn re2_escaped_punctuation_is_literal() {
        assert!(holds(r#""a<b" =~ /a\<b/"#));
        assert!(holds(r#""a.b" =~ /^a\.b$/"#));
        assert!(!holds(r#""axb" =~ /^a\.b$/"#));
        assert!(holds(r#""a_b" =~ /a\_b/"#));
    }

    #[test]
    fn re2_octal_quote_and_literal_braces() {
        assert!(holds(r#""a b" =~ /a\040b/"#));
        assert!(holds(r#""a.*b" =~ /\Q.*\E/"#));
        assert!(holds(r#""a{b}" =~ /a{b}/"#));
        assert!(holds(r#""aaa" =~ /^a{2,3}$/"#));
        // A leading zero makes it no repetition in RE2, so `{01}` is literal text.
        assert!(holds(r#""{01}" =~ /^x?{01}$/"#));
    }

    #[test]
    fn re2_class_punctuation_is_literal() {
        assert!(holds(r#""&" =~ /^[a&&b]$/"#));
        assert!(holds(r#""[" =~ /^[[]$/"#));
        assert!(holds(r#""~" =~ /^[~]$/"#));
        assert!(holds(r#""x" =~ /^[[:alpha:]]$/"#));
    }

    #[test]
    fn re2_flag_groups() {
        assert!(holds(r#""ABC" =~ /(?i)abc/"#));
        assert!(holds(r#""ABC" =~ /(?ii:abc)/"#));
        assert!(!holds(r#""ABC" =~ /(?i-i)abc/"#));
        assert!(holds(r#""abc" =~ /(?P<first>a)(?<rest>bc)/"#));
    }

    #[test]
    fn single_character_pattern_is_not_a_pattern_lexeme() {
        // GitLab's docs: "Single-character regular expressions, like /./, are not supported".
        assert_eq!(
            error("$A =~ /./"),
            ExprError::UnknownLexeme {
                position: 6,
                found: "/./".to_owned()
            }
        );
    }

    #[test]
    fn dollar_brace_variables_are_not_lexemes() {
        assert_eq!(
            error("${A} == 'a'"),
            ExprError::UnknownLexeme {
                position: 0,
                found: "${A} == 'a'".to_owned()
            }
        );
    }

    #[test]
    fn input_references_evaluate_to_null() {
        assert!(holds("$[[ inputs.cloud ]] == null"));
        assert!(!holds(r#"$[[inputs.cloud]] == "aws""#));
    }

    #[test]
    fn operators_after_operands_are_accepted_like_gitlab() {
        assert!(holds("$A $SAME_AS_A =="));
        assert!(holds("== $A $SAME_AS_A"));
    }

    #[test]
    fn operator_precedence_is_left_associative() {
        // (a == a) == "true" holds only when grouped left first.
        assert!(holds(r#"$A == $A == "true""#));
    }

    #[test]
    fn null_keyword_is_a_prefix_lexeme() {
        assert_eq!(
            error("nullx"),
            ExprError::UnknownLexeme {
                position: 4,
                found: "x".to_owned()
            }
        );
        assert!(matches!(
            error("nullnull"),
            ExprError::UnreachableNodes { position: 4 }
        ));
    }

    #[test]
    fn booleans_need_word_boundaries() {
        assert_eq!(
            error("trueish"),
            ExprError::UnknownLexeme {
                position: 0,
                found: "trueish".to_owned()
            }
        );
    }

    #[test]
    fn whitespace_anywhere_is_skipped() {
        assert!(holds("\t(\n$A\r==\x0B'a'\x0C)  "));
    }

    #[test]
    fn error_empty() {
        assert_eq!(error(""), ExprError::Empty);
        assert_eq!(error(" \n\t"), ExprError::Empty);
        assert_eq!(
            error("").to_string(),
            "invalid expression syntax: the expression is empty"
        );
    }

    #[test]
    fn error_unknown_lexeme_message() {
        assert_eq!(
            error("$A = 'a'").to_string(),
            "invalid expression syntax: Unknown lexeme found! at byte 3: `= 'a'`"
        );
    }

    #[test]
    fn error_unknown_lexeme_for_not_and_unterminated_string() {
        assert!(matches!(
            error("!$A"),
            ExprError::UnknownLexeme { position: 0, .. }
        ));
        assert!(matches!(
            error("$A == 'a"),
            ExprError::UnknownLexeme { position: 6, .. }
        ));
        assert!(matches!(
            error("$A == \"a\nb\""),
            ExprError::UnknownLexeme { position: 6, .. }
        ));
    }

    #[test]
    fn error_too_many_tokens() {
        let ninety_nine = vec!["$A"; 50].join(" && ");
        assert_eq!(ninety_nine.split(' ').count(), 99);
        assert!(parse(&ninety_nine).is_ok());
        let hundred = format!("{ninety_nine} &&");
        assert_eq!(
            error(&hundred),
            ExprError::TooManyTokens {
                position: hundred.len() - 2
            }
        );
        assert_eq!(
            error(&hundred).to_string(),
            format!(
                "invalid expression syntax: Too many tokens! (at most 99 are allowed; the next one \
                 starts at byte {})",
                hundred.len() - 2
            )
        );
    }

    #[test]
    fn error_unknown_lexeme_wins_over_too_many_tokens_at_the_hundredth() {
        let ninety_nine = vec!["$A"; 50].join(" && ");
        assert!(matches!(
            error(&format!("{ninety_nine} ?")),
            ExprError::UnknownLexeme { .. }
        ));
    }

    #[test]
    fn error_too_long() {
        let long = format!("'{}'", "a".repeat(MAX_EXPRESSION_BYTES));
        assert_eq!(
            error(&long),
            ExprError::TooLong {
                length: MAX_EXPRESSION_BYTES + 2,
                limit: MAX_EXPRESSION_BYTES
            }
        );
        assert_eq!(
            error(&long).to_string(),
            format!(
                "invalid expression syntax: the expression is {} bytes long, more than the {} \
                 bytes berth accepts",
                MAX_EXPRESSION_BYTES + 2,
                MAX_EXPRESSION_BYTES
            )
        );
    }

    #[test]
    fn error_invalid_regular_expression() {
        let found = error("$A =~ /ab(c/");
        assert!(
            matches!(&found, ExprError::InvalidRegularExpression { position: 6, pattern, .. } if pattern == "/ab(c/"),
            "{found:?}"
        );
        assert!(
            found.to_string().starts_with(
                "invalid expression syntax: Invalid regular expression! `/ab(c/` at byte 6: "
            ),
            "{found}"
        );
    }

    #[test]
    fn error_invalid_regular_expression_reasons() {
        let reason = |expression: &str| match error(expression) {
            ExprError::InvalidRegularExpression { reason, .. } => reason,
            other => panic!("{expression}: {other:?}"),
        };
        assert!(reason("$A =~ /a{1001}/").contains("counts above 1000"));
        assert!(reason("$A =~ /a{3,2}/").contains("m below n"));
        assert!(reason("$A =~ /a**/").contains("bad repetition operator"));
        assert!(reason("$A =~ /(?x)a/").contains("invalid or unsupported Perl syntax"));
        assert!(reason("$A =~ /(?=a)/").contains("invalid or unsupported Perl syntax"));
        assert!(reason(r"$A =~ /\1a/").contains("backreferences"));
        assert!(reason(r"$A =~ /\Ca/").contains(r"\C"));
        assert!(reason(r"$A =~ /\ka/").contains("invalid escape sequence"));
        assert!(reason("$A =~ /[ab/").contains("missing closing ]"));
        assert!(reason("$A =~ /(?-)a/").contains("without a flag"));
    }

    #[test]
    fn error_regex_size_limit() {
        let found = error(r"$A =~ /(\pL{1000}){1000}x/");
        assert!(
            matches!(&found, ExprError::InvalidRegularExpression { reason, .. } if reason.contains("berth allows")),
            "{found:?}"
        );
    }

    #[test]
    fn error_unmatched_parenthesis() {
        assert_eq!(
            error("$A)"),
            ExprError::UnmatchedParenthesis { position: 2 }
        );
        assert_eq!(
            error("($A))").to_string(),
            "invalid expression syntax: Unmatched parenthesis: the `)` at byte 4 closes nothing"
        );
    }

    #[test]
    fn error_unclosed_parenthesis() {
        assert_eq!(error("($A"), ExprError::UnclosedParenthesis { position: 0 });
        assert_eq!(
            error("$A && (($B)").to_string(),
            "invalid expression syntax: Unprocessable token found in parse tree: parenthesis_open \
             (the `(` at byte 6 is never closed)"
        );
    }

    #[test]
    fn error_missing_operand() {
        assert_eq!(
            error("$A =="),
            ExprError::MissingOperand {
                operator: "==",
                position: 3
            }
        );
        assert_eq!(
            error("&&"),
            ExprError::MissingOperand {
                operator: "&&",
                position: 0
            }
        );
        assert_eq!(
            error("$A || ").to_string(),
            "invalid expression syntax: Invalid left operand: `||` at byte 3 lacks an operand"
        );
    }

    #[test]
    fn error_unreachable_nodes() {
        assert_eq!(error("$A $B"), ExprError::UnreachableNodes { position: 3 });
        assert_eq!(
            error("$A == $B $C").to_string(),
            "invalid expression syntax: Unreachable nodes in parse tree: the part starting at byte \
             6 is not joined to the rest by an operator"
        );
    }

    #[test]
    fn error_empty_parse_tree() {
        assert_eq!(error("()"), ExprError::EmptyParseTree);
        assert_eq!(
            error("(())").to_string(),
            "invalid expression syntax: Empty parse tree (the expression has parentheses and no value)"
        );
    }

    #[test]
    fn error_pattern_left_of_match() {
        assert_eq!(
            error("/ab/ =~ $A"),
            ExprError::UnsupportedOperand {
                side: "left",
                operator: "=~",
                position: 5,
                kind: "a /pattern/"
            }
        );
    }

    #[test]
    fn error_pattern_compared_with_non_pattern() {
        assert_eq!(
            error("($A || /ab/) == 'x'").to_string(),
            "invalid expression syntax: the left operand of `==` at byte 13 can be a /pattern/, \
             which GitLab cannot evaluate there (it fails with an internal error)"
        );
        // `null && /ab/` is always null, so it is fine.
        assert!(parse("(null && /ab/) == 'x'").is_ok());
    }

    #[test]
    fn error_true_right_of_match() {
        assert_eq!(
            error("$A =~ ($B == 'b')"),
            ExprError::UnsupportedOperand {
                side: "right",
                operator: "=~",
                position: 3,
                kind: "true"
            }
        );
        assert!(matches!(
            error("$A !~ true"),
            ExprError::UnsupportedOperand { .. }
        ));
    }

    #[test]
    fn lexicon_builds() {
        assert!(LEXICON.is_ok());
    }

    #[test]
    fn parsed_expression_is_reusable_across_variable_sets() {
        let parsed = match parse("$X =~ /^v\\d+$/") {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}"),
        };
        assert!(parsed.evaluate(&|_| Some("v12".to_owned())));
        assert!(!parsed.evaluate(&|_| Some("v12a".to_owned())));
        assert!(!parsed.evaluate(&|_| None));
    }

    #[test]
    fn nested_star_patterns_match_in_linear_time() {
        let haystack = "a".repeat(100_000);
        let parsed = match parse("$X =~ /^(a*)*b$/") {
            Ok(parsed) => parsed,
            Err(error) => panic!("{error}"),
        };
        assert!(!parsed.evaluate(&|_| Some(haystack.clone())));
    }

    #[test]
    fn deepest_nesting_within_the_token_limit_parses() {
        let deep = format!("{}$A{}", "(".repeat(49), ")".repeat(49));
        assert!(holds(&deep));
        let deeper = format!("{}$A{}", "(".repeat(50), ")".repeat(50));
        assert!(matches!(error(&deeper), ExprError::TooManyTokens { .. }));
    }

    /// A small xorshift generator: junk built from the language's own fragments.
    struct Junk(u64);

    impl Junk {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            let index = usize::try_from(self.next() % from.len() as u64).unwrap_or(0);
            from.get(index).copied().unwrap_or("")
        }
    }

    const FRAGMENTS: &[&str] = &[
        "$A",
        "$EMPTY",
        "$U",
        "$P",
        "${A}",
        "$[[ inputs.x ]]",
        "\"",
        "'",
        "/",
        "\\",
        "\\/",
        "(",
        ")",
        "==",
        "!=",
        "=~",
        "!~",
        "&&",
        "||",
        "!",
        "=",
        "~",
        "&",
        "|",
        " ",
        "\n",
        "null",
        "true",
        "false",
        "i",
        "m",
        "s",
        "U",
        "x",
        "[",
        "]",
        "{",
        "}",
        "{2}",
        "{1001}",
        "*",
        "+",
        "?",
        "(?",
        "(?i)",
        "\\d",
        "\\Q",
        "\\E",
        "\\1",
        "\\C",
        "\\p",
        "\\x{",
        "[:",
        ":]",
        "é",
        "٣",
        "\u{3000}",
        "/a/",
        "/ab/i",
        "'x'",
        "\"y\"",
        "^",
        "$",
        ".",
        "-",
        "0",
        "7",
    ];

    const VALUES: &[&str] = &[
        "", " ", "a", "/a/", "/ab(/", "/\\/", "/[/", "//", "/x/ismU", "x\n/^y/m", "true", "é",
    ];

    #[test]
    fn junk_never_panics_and_parse_agrees_with_evaluate() {
        let mut junk = Junk(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let length = usize::try_from(junk.next() % 12).unwrap_or(0);
            let expression: String = (0..length).map(|_| junk.pick(FRAGMENTS)).collect();
            let value = junk.pick(VALUES).to_owned();
            let lookup = move |name: &str| (name != "U").then(|| value.clone());
            match (parse(&expression), evaluate(&expression, &lookup)) {
                (Ok(parsed), Ok(result)) => assert_eq!(parsed.evaluate(&lookup), result),
                (Err(parse_error), Err(evaluate_error)) => {
                    assert_eq!(parse_error, evaluate_error);
                    assert!(
                        parse_error
                            .to_string()
                            .starts_with("invalid expression syntax: "),
                        "{expression:?}: {parse_error}"
                    );
                }
                (parsed, evaluated) => {
                    panic!("{expression:?}: parse {parsed:?} but evaluate {evaluated:?}")
                }
            }
        }
    }

    #[test]
    fn junk_patterns_never_panic() {
        let mut junk = Junk(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let length = usize::try_from(junk.next() % 10).unwrap_or(0);
            let body: String = (0..length).map(|_| junk.pick(FRAGMENTS)).collect();
            let outcome = Pattern::from_ruby_syntax(&format!("/{body}/i"));
            // A body with a newline may be read from one of its lines, without the flags.
            if let Ok(pattern) = outcome
                && !body.contains('\n')
            {
                assert!(pattern.source.starts_with("(?i)"), "{body:?}");
            }
        }
    }
}
