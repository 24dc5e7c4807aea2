//! How client commands print data: one `-o table|json|jsonl|csv` for every command, data on
//! stdout only (notes, progress and errors go to stderr), and the exit codes scripts rely on.

use std::io::Write;

use serde_json::Value;

/// Exit codes of the client commands (clap exits 2 for usage errors by itself).
pub mod exit {
    /// The server answered with an error.
    pub const SERVER_ERROR: u8 = 1;
    /// The command line is wrong.
    pub const USAGE: u8 = 2;
    /// The server could not be reached.
    pub const CANNOT_CONNECT: u8 = 3;
    /// `health`: the server answered, and it is not serving.
    pub const NOT_SERVING: u8 = 4;
}

/// A failure with its exit code; `main` exits with `code` and prints the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The exit code of a command's error: a [`Failure`]'s own, else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<Failure>()
        .map_or(exit::SERVER_ERROR, |failure| failure.code)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document (the proto3 JSON form of the answer: 64-bit numbers are strings).
    Json,
    /// One compact JSON value per line (per user, per event, per row).
    Jsonl,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Rows with named columns, printable as a table, CSV or JSON objects.
#[derive(Debug, Default)]
pub struct Rows {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    pub fn new(headers: &[&str]) -> Rows {
        Rows {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Aligned columns (cells cut at 48 characters).
    pub fn table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
                    .min(48)
            })
            .collect();
        let line = |cells: &[String]| {
            let text = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{:<w$}", c.chars().take(*w).collect::<String>(), w = w))
                .collect::<Vec<_>>()
                .join("  ");
            text.trim_end().to_string()
        };
        writeln!(out, "{}", line(&self.headers))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row))?;
        }
        Ok(())
    }

    pub fn csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "{}", csv_line(&self.headers))?;
        for row in &self.rows {
            writeln!(out, "{}", csv_line(row))?;
        }
        Ok(())
    }

    /// Each row as a JSON object keyed by the headers.
    pub fn objects(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                Value::Object(
                    self.headers
                        .iter()
                        .cloned()
                        .zip(row.iter().map(|c| Value::String(c.clone())))
                        .collect(),
                )
            })
            .collect()
    }
}

/// One CSV line: fields with a comma, quote or line break are quoted, quotes doubled.
pub fn csv_line(cells: &[String]) -> String {
    cells
        .iter()
        .map(|cell| {
            if cell.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a command prints: the whole answer as one JSON document, and its rows (for table, CSV
/// and, one per line, JSON lines).
pub struct Printed {
    pub document: Value,
    pub rows: Rows,
    /// JSON lines: these values, one per line, instead of the rows as objects.
    pub lines: Option<Vec<Value>>,
}

impl Printed {
    pub fn new(document: Value, rows: Rows) -> Printed {
        Printed {
            document,
            rows,
            lines: None,
        }
    }

    pub fn with_lines(mut self, lines: Vec<Value>) -> Printed {
        self.lines = Some(lines);
        self
    }

    pub fn print(self, format: Format) -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        match format {
            Format::Table => self.rows.table(&mut out)?,
            Format::Csv => self.rows.csv(&mut out)?,
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&self.document)?)?,
            Format::Jsonl => {
                for line in self.lines.unwrap_or_else(|| self.rows.objects()) {
                    writeln!(out, "{line}")?;
                }
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// A proto message in its proto3 JSON form.
pub fn json_of(message: &impl serde::Serialize) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(message)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let cells = ["plain", "a,b", "say \"hi\"", "two\nlines"].map(String::from);
        assert_eq!(
            csv_line(&cells),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\""
        );
    }

    #[test]
    fn failures_keep_their_exit_code_through_context() {
        let error = anyhow::Error::new(Failure::new(exit::CANNOT_CONNECT, "no server"))
            .context("counting users");
        assert_eq!(exit_code(&error), exit::CANNOT_CONNECT);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), exit::SERVER_ERROR);
    }
}
