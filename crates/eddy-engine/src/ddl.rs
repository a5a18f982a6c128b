//! Parsing of the connector statements sqlparser does not know:
//! `CREATE SOURCE`, `CREATE TABLE ... WITH (connector = ...)` and
//! `CREATE SINK`, in RisingWave's and Flink's syntax so that users can bring
//! their scripts:
//!
//! ```sql
//! CREATE SOURCE bids (auction BIGINT, price BIGINT)
//!   INCLUDE partition, offset AS kafka_offset
//!   WITH (connector = 'kafka', topic = 'bids', properties.bootstrap.server = 'localhost:9092')
//!   FORMAT PLAIN ENCODE JSON;
//! CREATE SINK out FROM best_bids WITH (connector = 'kafka', topic = 'best') FORMAT UPSERT ENCODE JSON;
//! ```
//!
//! The column list is parsed by sqlparser itself (so it accepts exactly what
//! `CREATE TABLE` accepts); this module parses the clauses around it. Option
//! keys may be dotted (`properties.bootstrap.server`) or quoted; values are
//! string literals, numbers or bare words, kept as text.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{ColumnDef, Query, TableConstraint};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token};
use eddy_common::{Error, Result};
pub use eddy_connectors::spec::{FormatSpec, Include, IncludeKind};

/// A connector statement.
#[derive(Debug, Clone)]
pub enum ConnectorStatement {
    /// `CREATE SOURCE`: an append-only stream, read by the views over it.
    CreateSource(ConnectorDefinition),
    /// `CREATE TABLE ... WITH (connector = ...)`: a stored table fed by a
    /// connector.
    CreateTable(ConnectorDefinition),
    /// `CREATE SINK`.
    CreateSink(SinkDefinition),
    /// `DROP SOURCE` or `DROP SINK`.
    Drop {
        /// `source` or `sink`.
        kind: &'static str,
        /// `IF EXISTS`.
        if_exists: bool,
        /// The objects named.
        names: Vec<String>,
        /// `CASCADE`.
        cascade: bool,
    },
}

/// A source or connector table.
#[derive(Debug, Clone)]
pub struct ConnectorDefinition {
    /// The object's name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Declared columns (may be empty when a schema registry supplies them).
    pub columns: Vec<ColumnDef>,
    /// The statement's text.
    pub text: String,
    /// Where in `text` a column list would go, when it has none (so that
    /// columns derived from a schema can be written in).
    pub columns_at: Option<usize>,
    /// Table constraints (`PRIMARY KEY (...)`).
    pub constraints: Vec<TableConstraint>,
    /// `INCLUDE` clauses, in order.
    pub includes: Vec<Include>,
    /// `WITH (...)` options, keys lower case.
    pub options: BTreeMap<String, String>,
    /// `FORMAT ... ENCODE ...`, if given.
    pub format: Option<FormatSpec>,
}

/// What a sink reads.
#[derive(Debug, Clone)]
pub enum SinkInput {
    /// `FROM name`.
    Relation(String),
    /// `AS query`.
    Query(Box<Query>),
}

/// A sink.
#[derive(Debug, Clone)]
pub struct SinkDefinition {
    /// The sink's name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// What it writes out.
    pub input: SinkInput,
    /// `WITH (...)` options, keys lower case.
    pub options: BTreeMap<String, String>,
    /// `FORMAT ... ENCODE ...`, if given.
    pub format: Option<FormatSpec>,
}

/// Parse `sql` if it is a connector statement. `Ok(None)`: it is not (a
/// plain `CREATE TABLE` included), and sqlparser should parse it.
pub fn parse(sql: &str) -> Result<Option<ConnectorStatement>> {
    let dialect = PostgreSqlDialect {};
    let Ok(parser) = Parser::new(&dialect).try_with_sql(sql) else {
        // Let sqlparser report what does not even tokenize.
        return Ok(None);
    };
    let mut parser = parser;
    if parser.parse_keyword(Keyword::DROP) {
        let kind = if word(&mut parser, "SOURCE") {
            "source"
        } else if word(&mut parser, "SINK") {
            "sink"
        } else {
            return Ok(None);
        };
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let mut names = vec![object_name(&mut parser)?];
        while parser.consume_token(&Token::Comma) {
            names.push(object_name(&mut parser)?);
        }
        let cascade = parser.parse_keyword(Keyword::CASCADE);
        if !cascade {
            let _ = parser.parse_keyword(Keyword::RESTRICT);
        }
        return finish(
            parser,
            ConnectorStatement::Drop {
                kind,
                if_exists,
                names,
                cascade,
            },
        );
    }
    if !parser.parse_keyword(Keyword::CREATE) {
        return Ok(None);
    }
    let statement = if word(&mut parser, "SOURCE") {
        ConnectorStatement::CreateSource(definition(&mut parser, sql)?)
    } else if parser.parse_keyword(Keyword::TABLE) {
        // A plain CREATE TABLE is sqlparser's, whatever form it takes.
        if !sql.to_ascii_lowercase().contains("connector") {
            return Ok(None);
        }
        let definition = definition(&mut parser, sql)?;
        if !definition.options.contains_key("connector") {
            return Ok(None);
        }
        ConnectorStatement::CreateTable(definition)
    } else if word(&mut parser, "SINK") {
        ConnectorStatement::CreateSink(sink(&mut parser)?)
    } else {
        return Ok(None);
    };
    finish(parser, statement)
}

/// The statement, if nothing but a semicolon follows it.
fn finish(mut parser: Parser, statement: ConnectorStatement) -> Result<Option<ConnectorStatement>> {
    let _ = parser.consume_token(&Token::SemiColon);
    if parser.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!(
            "syntax error at or near \"{}\"",
            parser.peek_token().token
        )));
    }
    Ok(Some(statement))
}

fn definition(parser: &mut Parser, sql: &str) -> Result<ConnectorDefinition> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(parser)?;
    let next = parser.peek_token();
    let columns_at = (next.token != Token::LParen)
        .then(|| byte_offset(sql, next.span.start))
        .flatten();
    let (columns, constraints) = parser.parse_columns().map_err(syntax)?;
    let mut includes = Vec::new();
    while word(parser, "INCLUDE") {
        loop {
            includes.push(include(parser)?);
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    let options = if parser.parse_keyword(Keyword::WITH) {
        options(parser)?
    } else {
        BTreeMap::new()
    };
    let format = format(parser)?;
    Ok(ConnectorDefinition {
        name,
        if_not_exists,
        columns,
        text: sql.to_string(),
        columns_at,
        constraints,
        includes,
        options,
        format,
    })
}

fn include(parser: &mut Parser) -> Result<Include> {
    let kind = parser.parse_identifier().map_err(syntax)?.value;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "key" => IncludeKind::Key,
        "partition" => IncludeKind::Partition,
        "offset" => IncludeKind::Offset,
        "timestamp" => IncludeKind::Timestamp,
        "header" => IncludeKind::Header(parser.parse_literal_string().map_err(syntax)?),
        other => {
            return Err(Error::Syntax(format!(
                "INCLUDE {other} is not supported: use key, partition, offset, timestamp or header 'name'"
            )))
        }
    };
    let alias = if parser.parse_keyword(Keyword::AS) {
        Some(parser.parse_identifier().map_err(syntax)?.value)
    } else {
        None
    };
    Ok(Include { kind, alias })
}

fn sink(parser: &mut Parser) -> Result<SinkDefinition> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(parser)?;
    let input = if parser.parse_keyword(Keyword::FROM) {
        SinkInput::Relation(object_name(parser)?)
    } else if parser.parse_keyword(Keyword::AS) {
        SinkInput::Query(query_before_options(parser)?)
    } else {
        return Err(Error::Syntax(
            "CREATE SINK needs FROM relation or AS query".into(),
        ));
    };
    let options = if parser.parse_keyword(Keyword::WITH) {
        options(parser)?
    } else {
        BTreeMap::new()
    };
    let format = format(parser)?;
    Ok(SinkDefinition {
        name,
        if_not_exists,
        input,
        options,
        format,
    })
}

/// The query of `CREATE SINK s AS query WITH (...)`: the tokens up to the
/// first `WITH (` outside parentheses, parsed on their own. (Given the whole
/// statement, sqlparser would read `FROM t WITH (...)` as table hints and
/// take the sink's options for them.)
fn query_before_options(parser: &mut Parser) -> Result<Box<Query>> {
    let mut tokens = Vec::new();
    let mut depth = 0i32;
    loop {
        let token = parser.peek_token();
        let ends = match &token.token {
            Token::EOF | Token::SemiColon => depth == 0,
            Token::Word(word) if word.keyword == Keyword::WITH => {
                depth == 0 && parser.peek_nth_token(1).token == Token::LParen
            }
            Token::LParen => {
                depth += 1;
                false
            }
            Token::RParen => {
                depth -= 1;
                false
            }
            _ => false,
        };
        if ends {
            break;
        }
        tokens.push(parser.next_token());
    }
    let mut query = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(tokens);
    let parsed = query.parse_query().map_err(syntax)?;
    if query.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!(
            "unexpected {} in the sink's query",
            query.peek_token().token
        )));
    }
    Ok(parsed)
}

/// `(key = value, ...)`.
fn options(parser: &mut Parser) -> Result<BTreeMap<String, String>> {
    let mut options = BTreeMap::new();
    parser.expect_token(&Token::LParen).map_err(syntax)?;
    if parser.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key = option_key(parser)?;
        parser.expect_token(&Token::Eq).map_err(syntax)?;
        let value = option_value(parser)?;
        if options.insert(key.clone(), value).is_some() {
            return Err(Error::Syntax(format!("option \"{key}\" given twice")));
        }
        if parser.consume_token(&Token::RParen) {
            return Ok(options);
        }
        parser.expect_token(&Token::Comma).map_err(syntax)?;
    }
}

fn option_key(parser: &mut Parser) -> Result<String> {
    let first = parser.next_token();
    let mut key = match first.token {
        Token::Word(word) => word.value,
        Token::SingleQuotedString(text) => return Ok(text.to_ascii_lowercase()),
        other => {
            return Err(Error::Syntax(format!(
                "syntax error at or near \"{other}\": expected an option name"
            )))
        }
    };
    while parser.consume_token(&Token::Period) {
        match parser.next_token().token {
            Token::Word(word) => {
                key.push('.');
                key.push_str(&word.value);
            }
            other => {
                return Err(Error::Syntax(format!(
                    "syntax error at or near \"{other}\": expected an option name"
                )))
            }
        }
    }
    Ok(key.to_ascii_lowercase())
}

fn option_value(parser: &mut Parser) -> Result<String> {
    let negative = parser.consume_token(&Token::Minus);
    let value = match parser.next_token().token {
        Token::SingleQuotedString(text) if !negative => text,
        Token::Number(number, _) => number,
        Token::Word(word) if !negative => word.value,
        other => {
            return Err(Error::Syntax(format!(
                "syntax error at or near \"{other}\": expected an option value"
            )))
        }
    };
    Ok(if negative { format!("-{value}") } else { value })
}

/// `FORMAT f ENCODE e [(options)]`, if present.
fn format(parser: &mut Parser) -> Result<Option<FormatSpec>> {
    if !parser.parse_keyword(Keyword::FORMAT) {
        return Ok(None);
    }
    let format = parser.parse_identifier().map_err(syntax)?.value;
    if !word(parser, "ENCODE") {
        return Err(Error::Syntax(format!(
            "FORMAT {format} must be followed by ENCODE"
        )));
    }
    let encode = parser.parse_identifier().map_err(syntax)?.value;
    let options = if parser.peek_token().token == Token::LParen {
        options(parser)?
    } else {
        BTreeMap::new()
    };
    Ok(Some(FormatSpec {
        format: format.to_ascii_lowercase(),
        encode: encode.to_ascii_lowercase(),
        options,
    }))
}

fn object_name(parser: &mut Parser) -> Result<String> {
    let name = parser.parse_object_name(false).map_err(syntax)?;
    // Only the unqualified name (or `public.name`) names an object.
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|part| part.as_ident().map(|ident| ident.value.clone()))
        .collect();
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        _ => Err(Error::Syntax(format!("invalid object name {name}"))),
    }
}

/// The byte offset in `sql` of a token's `location` (lines and columns
/// counted from 1, columns in characters); the end of the text for the end
/// of the statement.
fn byte_offset(sql: &str, location: Location) -> Option<usize> {
    if location.line == 0 {
        return Some(sql.len());
    }
    let mut start = 0;
    for (number, line) in sql.split_inclusive('\n').enumerate() {
        if number as u64 + 1 == location.line {
            let column = usize::try_from(location.column.checked_sub(1)?).ok()?;
            return Some(
                line.char_indices()
                    .nth(column)
                    .map_or(start + line.len(), |(at, _)| start + at),
            );
        }
        start += line.len();
    }
    Some(sql.len())
}

/// Consume the bare word `expected` (any case) if it is next.
fn word(parser: &mut Parser, expected: &str) -> bool {
    match &parser.peek_token().token {
        Token::Word(word)
            if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(expected) =>
        {
            parser.next_token();
            true
        }
        _ => false,
    }
}

fn syntax(error: ParserError) -> Error {
    Error::Syntax(
        error
            .to_string()
            .trim_start_matches("sql parser error: ")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(sql: &str) -> ConnectorDefinition {
        match parse(sql) {
            Ok(Some(ConnectorStatement::CreateSource(d))) => d,
            other => panic!("not a source: {other:?}"),
        }
    }

    #[test]
    fn where_a_column_list_would_go() {
        let sql = "CREATE SOURCE \"bïds\"\n  INCLUDE key WITH (connector = 'kafka', topic = 'é')\n  FORMAT PLAIN ENCODE AVRO (schema.registry = 'http://r')";
        let d = source(sql);
        let at = d.columns_at.expect("no column list");
        assert_eq!(&d.text[at..at + 7], "INCLUDE");
        let d = source("CREATE SOURCE s WITH (connector = 'kafka') FORMAT PLAIN ENCODE AVRO (schema.registry = 'r')");
        assert_eq!(d.columns_at, Some(16));
        let d = source("CREATE SOURCE s (a INT) WITH (connector = 'kafka')");
        assert_eq!(d.columns_at, None);
    }

    #[test]
    fn source_with_everything() {
        let d = source(
            "CREATE SOURCE IF NOT EXISTS bids (auction BIGINT, price BIGINT NOT NULL) \
             INCLUDE partition, offset AS off INCLUDE header 'trace' AS trace_id \
             WITH (connector = 'kafka', topic = 'bids', properties.bootstrap.server = 'h:9092', \
                   scan.startup.timestamp.millis = 1700000000000, 'odd key' = yes) \
             FORMAT PLAIN ENCODE JSON (timestamptz.handling.mode = 'micro');",
        );
        assert_eq!(d.name, "bids");
        assert!(d.if_not_exists);
        assert_eq!(d.columns.len(), 2);
        assert_eq!(
            d.includes,
            vec![
                Include {
                    kind: IncludeKind::Partition,
                    alias: None
                },
                Include {
                    kind: IncludeKind::Offset,
                    alias: Some("off".into())
                },
                Include {
                    kind: IncludeKind::Header("trace".into()),
                    alias: Some("trace_id".into())
                },
            ]
        );
        assert_eq!(d.options["properties.bootstrap.server"], "h:9092");
        assert_eq!(d.options["scan.startup.timestamp.millis"], "1700000000000");
        assert_eq!(d.options["odd key"], "yes");
        let format = d.format.expect("a format");
        assert_eq!(
            (format.format.as_str(), format.encode.as_str()),
            ("plain", "json")
        );
        assert_eq!(format.options["timestamptz.handling.mode"], "micro");
    }

    #[test]
    fn plain_create_table_is_not_ours() {
        assert!(matches!(
            parse("CREATE TABLE t (a INT PRIMARY KEY)"),
            Ok(None)
        ));
        assert!(matches!(parse("SELECT 1"), Ok(None)));
        let table = parse("CREATE TABLE t (a INT, PRIMARY KEY (a)) WITH (connector = 'kafka') FORMAT UPSERT ENCODE JSON");
        assert!(matches!(
            table,
            Ok(Some(ConnectorStatement::CreateTable(_)))
        ));
    }

    #[test]
    fn sinks_from_relations_and_queries() {
        let Ok(Some(ConnectorStatement::CreateSink(sink))) =
            parse("CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't') FORMAT UPSERT ENCODE JSON")
        else {
            panic!("not a sink");
        };
        assert!(matches!(sink.input, SinkInput::Relation(ref n) if n == "v"));
        let Ok(Some(ConnectorStatement::CreateSink(sink))) =
            parse("CREATE SINK s AS SELECT a FROM v WHERE a > 1 WITH (connector = 'kafka')")
        else {
            panic!("not a sink");
        };
        assert!(matches!(sink.input, SinkInput::Query(_)));
        assert!(sink.format.is_none());
        // Options right after a table are the sink's, not table hints.
        let Ok(Some(ConnectorStatement::CreateSink(sink))) = parse(
            "CREATE SINK s AS SELECT a FROM (SELECT a FROM v) AS w WITH (connector = 'kafka') FORMAT PLAIN ENCODE JSON",
        ) else {
            panic!("not a sink");
        };
        assert_eq!(sink.options["connector"], "kafka");
        assert!(sink.format.is_some());
        let Ok(Some(ConnectorStatement::CreateSink(sink))) =
            parse("CREATE SINK s AS SELECT a FROM v WITH (connector = 'kafka')")
        else {
            panic!("not a sink");
        };
        assert_eq!(sink.options["connector"], "kafka");
    }

    #[test]
    fn drops() {
        let Ok(Some(ConnectorStatement::Drop {
            kind,
            if_exists,
            names,
            cascade,
        })) = parse("DROP SOURCE IF EXISTS a, b CASCADE")
        else {
            panic!("not a drop");
        };
        assert_eq!((kind, if_exists, cascade), ("source", true, true));
        assert_eq!(names, ["a", "b"]);
        assert!(matches!(parse("DROP TABLE a"), Ok(None)));
    }

    #[test]
    fn errors_are_syntax_errors() {
        for bad in [
            "CREATE SOURCE s (a INT) WITH (connector = )",
            "CREATE SOURCE s (a INT) WITH (connector = 'k', connector = 'k')",
            "CREATE SOURCE s (a INT) INCLUDE nothing",
            "CREATE SOURCE s (a INT) FORMAT PLAIN",
            "CREATE SOURCE s (a INT) WITH (connector = 'k') trailing",
            "CREATE SINK s WITH (connector = 'k')",
        ] {
            assert!(matches!(parse(bad), Err(Error::Syntax(_))), "{bad}");
        }
    }
}
