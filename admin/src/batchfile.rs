//! The two input formats of `suyuan import` (JSON Lines and Handle.Net batch files), read one
//! entry at a time so a file of millions of records never sits in memory whole:
//!
//! - JSON Lines: `{"handle": "88.888.1/m-001", "values": [<REST value JSON>...]}` a line;
//! - the Handle.Net batch file of GenericBatch (Technical Manual, chapter 4): `CREATE h` and
//!   `ADD h`, each followed by value lines `index TYPE ttl perms ENCODING data` up to a blank
//!   line. Other commands are reported as skipped (their following lines consumed the way
//!   GenericBatch consumes them), `AUTHENTICATE` with its key line is ignored.
//!
//! Every entry carries the line number a person needs to find it.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use suyuan_codec::handle::key_of;
use suyuan_codec::json::{JsonLimits, put_body_from_json, site_from_json};
use suyuan_codec::value::{AdminRecord, HandleValue, Permissions, ValueReference, types};

/// What an entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Register the record (absent: create; equal: nothing; different: refused).
    Create,
    /// Add the values to an existing record (present and equal: nothing).
    Add,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub op: Op,
    pub handle: String,
    pub values: Vec<HandleValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Entry(Entry),
    /// A command `import` does not carry out (DELETE, MODIFY, HOME, ...).
    Skipped {
        line: usize,
        command: String,
    },
    /// A line that cannot be read; the rest of the file still is.
    Bad {
        line: usize,
        why: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Batch,
}

impl Format {
    /// JSON Lines when the name ends in `.jsonl` or the first non-blank character is `{`.
    pub fn detect(path: &Path, head: &[u8]) -> Format {
        let jsonl = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
        let brace = head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if jsonl || brace {
            Format::JsonLines
        } else {
            Format::Batch
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::JsonLines => "JSON Lines",
            Format::Batch => "Handle.Net batch file",
        }
    }
}

/// Longest line read; a longer one is reported bad rather than buffered without bound.
pub const MAX_LINE: usize = 4 << 20;

/// The entries of a file, in order.
pub struct Items<R> {
    reader: R,
    format: Format,
    line: usize,
    /// Files named by `FILE` value lines are relative to this directory.
    base: std::path::PathBuf,
    limits: JsonLimits,
    done: bool,
}

/// What a JSON Lines record lacks, said as the key to add.
fn missing_key(key: &str) -> String {
    format!(
        "missing key \"{key}\" (a line is {{\"handle\": \"prefix/suffix\", \"values\": [...]}})"
    )
}

/// A JSON Lines error named by the key at fault: the codec reads a line as a REST body, whose
/// messages speak of bodies and paths (`values[0].type: missing`).
fn json_line_error(text: &str, e: suyuan_codec::json::JsonError) -> String {
    use suyuan_codec::json::JsonError;
    match e {
        JsonError::Field { field, why } if why == "missing" => match field.rsplit_once('.') {
            Some((at, key)) => format!("missing key \"{key}\" in {at}"),
            None => format!("missing key \"{field}\""),
        },
        e => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(o)) if !o.contains_key("values") => missing_key("values"),
            _ => e.to_string(),
        },
    }
}

impl<R: BufRead> Items<R> {
    pub fn new(reader: R, format: Format, base: &Path) -> Self {
        Items {
            reader,
            format,
            line: 0,
            base: base.to_path_buf(),
            limits: JsonLimits::default(),
            done: false,
        }
    }

    /// The next line without its end, `None` at the end of the file. A line that is too long
    /// or not UTF-8 comes back as an error naming its number.
    fn next_line(&mut self) -> Option<Result<String, Item>> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        let n = match <&mut R as std::io::Read>::take(&mut self.reader, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(n) => n,
            Err(e) => {
                self.done = true;
                self.line += 1;
                return Some(Err(Item::Bad {
                    line: self.line,
                    why: format!("cannot read the file: {e}"),
                }));
            }
        };
        if n == 0 {
            self.done = true;
            return None;
        }
        self.line += 1;
        if buf.len() > MAX_LINE {
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            while !buf.ends_with(b"\n") {
                rest.clear();
                match <&mut R as std::io::Read>::take(&mut self.reader, MAX_LINE as u64)
                    .read_until(b'\n', &mut rest)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => buf = rest.split_off(0),
                }
            }
            return Some(Err(Item::Bad {
                line: self.line,
                why: format!("line longer than {MAX_LINE} bytes"),
            }));
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        match String::from_utf8(buf) {
            Ok(s) => Some(Ok(s)),
            Err(_) => Some(Err(Item::Bad {
                line: self.line,
                why: "not UTF-8".into(),
            })),
        }
    }

    fn next_json(&mut self) -> Option<Item> {
        loop {
            let text = match self.next_line()? {
                Ok(t) => t,
                Err(bad) => return Some(bad),
            };
            if text.trim().is_empty() {
                continue;
            }
            let line = self.line;
            let bad = |why: String| Some(Item::Bad { line, why });
            return match put_body_from_json(&text, &self.limits) {
                Ok(body) => match body.handle {
                    Some(handle) if !body.values.is_empty() => Some(Item::Entry(Entry {
                        line,
                        op: Op::Create,
                        handle,
                        values: body.values,
                    })),
                    Some(_) => bad("the record has no values".into()),
                    None => bad(missing_key("handle")),
                },
                Err(e) => bad(json_line_error(&text, e)),
            };
        }
    }

    /// Consumes lines up to the next blank one (the end of a block).
    fn skip_block(&mut self) {
        while let Some(Ok(l)) = self.next_line() {
            if l.trim().is_empty() {
                break;
            }
        }
    }

    fn next_batch(&mut self) -> Option<Item> {
        loop {
            let text = match self.next_line()? {
                Ok(t) => t,
                Err(bad) => return Some(bad),
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let line = self.line;
            let (command, rest) = match text.split_once(' ') {
                Some((c, r)) => (c.trim().to_ascii_uppercase(), r.trim().to_string()),
                None => (text.to_ascii_uppercase(), String::new()),
            };
            let op = match command.as_str() {
                "CREATE" => Op::Create,
                "ADD" => Op::Add,
                "AUTHENTICATE" => {
                    // Its key line (a password or a key file) goes with it; `--auth` decides.
                    let _ = self.next_line();
                    continue;
                }
                "MODIFY" | "HOME" | "UNHOME" | "SESSIONSETUP" => {
                    self.skip_block();
                    return Some(Item::Skipped { line, command });
                }
                "DELETE" | "REMOVE" => return Some(Item::Skipped { line, command }),
                _ => {
                    return Some(Item::Bad {
                        line,
                        why: format!("unknown command {command:?}"),
                    });
                }
            };
            if rest.is_empty() {
                self.skip_block();
                return Some(Item::Bad {
                    line,
                    why: format!("{command} without a handle"),
                });
            }
            let mut values = Vec::new();
            let mut error = None;
            while let Some(next) = self.next_line() {
                let value_line = match next {
                    Ok(l) => l,
                    Err(Item::Bad { line, why }) => {
                        error.get_or_insert((line, why));
                        continue;
                    }
                    Err(_) => continue,
                };
                if value_line.trim().is_empty() {
                    break;
                }
                if error.is_some() {
                    continue;
                }
                match parse_value_line(value_line.trim(), &self.base) {
                    Ok(v) => values.push(v),
                    Err(why) => error = Some((self.line, why)),
                }
            }
            if let Some((line, why)) = error {
                return Some(Item::Bad {
                    line,
                    why: format!("{rest}: {why}"),
                });
            }
            if values.is_empty() {
                return Some(Item::Bad {
                    line,
                    why: format!("{command} {rest} has no values"),
                });
            }
            return Some(Item::Entry(Entry {
                line,
                op,
                handle: rest,
                values,
            }));
        }
    }
}

impl<R: BufRead> Iterator for Items<R> {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        match self.format {
            Format::JsonLines => self.next_json(),
            Format::Batch => self.next_batch(),
        }
    }
}

/// One value line of a batch file: `index TYPE ttl perms ENCODING data`, where ENCODING is
/// `UTF8` (the rest of the line), `ADMIN` (`index:twelve bits:handle`, bit 0 ADD_HANDLE first),
/// `FILE` (a file's bytes; a `siteinfo.json` for HS_SITE) or `LIST` (`index:handle;...`).
pub fn parse_value_line(line: &str, base: &Path) -> Result<HandleValue, String> {
    // Space-separated fields as GenericBatch's tokenizer reads them; the data is the rest.
    let mut rest = line;
    let mut field = |name: &str| {
        let s = rest.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        rest = &s[end..];
        Some(&s[..end])
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("value line without its {name}"))
    };
    let index: u32 = field("index")?
        .parse()
        .map_err(|_| "error in handle value index string".to_string())?;
    let value_type = field("type")?.to_string();
    let ttl: i32 = field("ttl")?
        .parse()
        .map_err(|_| "error in handle value ttl string".to_string())?;
    let perms = field("permissions")?;
    if perms.len() != 4 || !perms.bytes().all(|b| b == b'0' || b == b'1') {
        return Err(format!(
            "permissions {perms:?} are not four characters of 0 and 1"
        ));
    }
    let permissions = Permissions(
        perms
            .bytes()
            .fold(0u8, |acc, b| (acc << 1) | u8::from(b == b'1')),
    );
    let encoding = field("data encoding")?.to_ascii_uppercase();
    let rest = rest.trim();
    let data = match encoding.as_str() {
        "UTF8" => rest.as_bytes().to_vec(),
        "ADMIN" => {
            let mut parts = rest.splitn(3, ':');
            let idx: u32 = parts
                .next()
                .and_then(|s| s.trim().parse().ok())
                .ok_or("error in admin index string")?;
            let bits = parts.next().map(str::trim).unwrap_or("");
            if bits.len() != 12 || !bits.bytes().all(|b| b == b'0' || b == b'1') {
                return Err(format!(
                    "admin permissions {bits:?} are not twelve characters of 0 and 1"
                ));
            }
            let mask = bits
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'1')
                .fold(0u16, |m, (i, _)| m | (1 << i));
            let handle = parts.next().map(str::trim).unwrap_or("");
            if handle.is_empty() {
                return Err("admin value without its handle".into());
            }
            AdminRecord::new(mask, handle, idx).encode()
        }
        "FILE" => {
            let path = base.join(rest);
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if value_type.eq_ignore_ascii_case(types::HS_SITE)
                && !suyuan_codec::json::looks_like_binary(&bytes)
            {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| format!("{} is not UTF-8", path.display()))?;
                let limits = JsonLimits::default();
                let json = suyuan_codec::json::parse_text(text, &limits)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                site_from_json(&json, &limits)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .encode()
            } else {
                bytes
            }
        }
        "LIST" => {
            let mut refs = Vec::new();
            for part in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let (i, h) = part
                    .split_once(':')
                    .ok_or_else(|| format!("{part:?} is not index:handle"))?;
                let index = i
                    .trim()
                    .parse()
                    .map_err(|_| format!("{part:?}: error in admin index string"))?;
                refs.push(ValueReference {
                    handle: h.trim().to_string(),
                    index,
                });
            }
            if refs.is_empty() {
                return Err("LIST without any index:handle".into());
            }
            suyuan_codec::value::encode_value_list(&refs)
        }
        other => return Err(format!("error in handle data type string: {other:?}")),
    };
    let mut v = HandleValue::new(index, value_type, data);
    v.ttl = ttl;
    v.permissions = permissions;
    Ok(v)
}

/// What a cheap first pass learns of a file: how many entries it holds (the progress bar's
/// length), and which handles it ADDs to (a CREATE of those is re-run against a record that
/// already holds the added values, and must still count as unchanged).
pub fn survey(reader: impl BufRead, format: Format) -> (u64, HashSet<String>) {
    let mut n = 0;
    let mut added = HashSet::new();
    for line in reader.split(b'\n').map_while(Result::ok) {
        let t = line.trim_ascii();
        let counted = match format {
            Format::JsonLines => t.first() == Some(&b'{'),
            Format::Batch => {
                let mut words = t.splitn(2, |b| *b == b' ');
                let word = words.next().unwrap_or(b"");
                if word.eq_ignore_ascii_case(b"ADD") {
                    if let Some(h) = words.next().and_then(|h| std::str::from_utf8(h).ok()) {
                        added.insert(key_of(h.trim()));
                    }
                }
                word.eq_ignore_ascii_case(b"CREATE") || word.eq_ignore_ascii_case(b"ADD")
            }
        };
        n += u64::from(counted);
    }
    (n, added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyuan_codec::value::{TypedData, admin_perm};

    fn items(text: &str, format: Format) -> Vec<Item> {
        Items::new(text.as_bytes(), format, Path::new(".")).collect()
    }

    #[test]
    fn batch_file_as_genericbatch_reads_it() {
        let text = "AUTHENTICATE SECKEY:301:12345/ADMIN\nsecretpw\n\n\
            CREATE 12345/test1\n\
            100 HS_ADMIN 86400 1110 ADMIN 300:111111111111:12345/ADMIN\n\
            1 URL 86400 1110 UTF8 https://example.org/test1 with spaces\n\
            200 HS_VLIST 3600 1110 LIST 300:12345/ADMIN;301:12345/ADMIN\n\
            \n\
            DELETE 12345/old\n\
            MODIFY 12345/x\n2 URL 86400 1110 UTF8 https://x\n\n\
            ADD 12345/ADMIN\n301 HS_SECKEY 86400 1100 UTF8 secretpw\n";
        let got = items(text, Format::Batch);
        assert_eq!(got.len(), 4, "{got:?}");
        let Item::Entry(e) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (e.line, e.op, e.handle.as_str()),
            (4, Op::Create, "12345/test1")
        );
        assert_eq!(e.values.len(), 3);
        let Ok(TypedData::Admin(a)) = e.values[0].typed() else {
            panic!()
        };
        assert_eq!(a.permissions, admin_perm::ALL);
        assert_eq!(
            (a.admin_index, a.admin_handle.as_str()),
            (300, "12345/ADMIN")
        );
        assert_eq!(e.values[0].permissions, Permissions(0b1110));
        assert_eq!(e.values[1].data, b"https://example.org/test1 with spaces");
        assert_eq!(e.values[2].ttl, 3600);
        let Ok(TypedData::ValueList(refs)) = e.values[2].typed() else {
            panic!()
        };
        assert_eq!(refs.len(), 2);
        assert_eq!(
            got[1],
            Item::Skipped {
                line: 9,
                command: "DELETE".into()
            }
        );
        assert_eq!(
            got[2],
            Item::Skipped {
                line: 10,
                command: "MODIFY".into()
            }
        );
        let Item::Entry(add) = &got[3] else { panic!() };
        assert_eq!((add.line, add.op), (13, Op::Add));
        assert_eq!(add.values[0].permissions, Permissions(0b1100));
        let (n, added) = survey(text.as_bytes(), Format::Batch);
        assert_eq!(n, 2);
        assert!(added.contains(&key_of("12345/admin")));
    }

    #[test]
    fn admin_bits_in_batch_order() {
        // The batch file lists ADD_HANDLE first; the last character is LIST_HANDLES.
        let v = parse_value_line(
            "100 HS_ADMIN 86400 1110 ADMIN 300:100000000001:0.NA/12345",
            Path::new("."),
        )
        .unwrap();
        let Ok(TypedData::Admin(a)) = v.typed() else {
            panic!()
        };
        assert_eq!(
            a.permissions,
            admin_perm::ADD_HANDLE | admin_perm::LIST_HANDLES
        );
    }

    #[test]
    fn a_bad_value_line_names_its_line_and_the_rest_goes_on() {
        let text = "CREATE 1/a\n1 URL x 1110 UTF8 u\n\nCREATE 1/b\n1 URL 1 1110 HEX 00\n\n\
                    BOGUS\nCREATE 1/c\n1 URL 86400 1110 UTF8 ok\n";
        let got = items(text, Format::Batch);
        assert!(
            matches!(&got[0], Item::Bad { line: 2, why } if why.contains("ttl")),
            "{got:?}"
        );
        assert!(
            matches!(&got[1], Item::Bad { line: 5, why } if why.contains("HEX")),
            "{got:?}"
        );
        assert!(matches!(&got[2], Item::Bad { line: 7, .. }), "{got:?}");
        assert!(
            matches!(&got[3], Item::Entry(Entry { line: 8, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn json_lines() {
        let text = "{\"handle\": \"1/a\", \"values\": [{\"index\": 1, \"type\": \"URL\", \"data\": {\"format\": \"string\", \"value\": \"u\"}}]}\n\
                    \n\
                    {\"handle\": \"1/b\", \"values\": [{\"index\": \"x\"}]}\n\
                    {\"values\": []}\n\
                    not json\n";
        let got = items(text, Format::JsonLines);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(
            matches!(&got[0], Item::Entry(Entry { line: 1, op: Op::Create, handle, values }) if handle == "1/a" && values[0].data == b"u")
        );
        assert!(
            matches!(&got[1], Item::Bad { line: 3, why } if why.contains("index")),
            "{got:?}"
        );
        assert!(matches!(&got[2], Item::Bad { line: 4, .. }), "{got:?}");
        assert!(matches!(&got[3], Item::Bad { line: 5, .. }), "{got:?}");
        assert_eq!(survey(text.as_bytes(), Format::JsonLines).0, 3);
    }

    #[test]
    fn format_detection() {
        assert_eq!(
            Format::detect(Path::new("x.jsonl"), b"CREATE"),
            Format::JsonLines
        );
        assert_eq!(
            Format::detect(Path::new("x.txt"), b"\n  {\"handle\""),
            Format::JsonLines
        );
        assert_eq!(
            Format::detect(Path::new("x.txt"), b"CREATE 1/a"),
            Format::Batch
        );
    }

    #[test]
    fn invalid_utf8_and_overlong_lines_are_reported_not_fatal() {
        let mut text = b"{\"handle\": \"1/a\", \"values\": [\xff]}\n".to_vec();
        text.extend_from_slice(b"{\"handle\": \"1/b\", \"values\": [{\"index\": 1, \"type\": \"URL\", \"data\": \"u\"}]}\n");
        let got: Vec<Item> = Items::new(&text[..], Format::JsonLines, Path::new(".")).collect();
        assert!(
            matches!(&got[0], Item::Bad { line: 1, why } if why.contains("UTF-8")),
            "{got:?}"
        );
        assert!(
            matches!(&got[1], Item::Entry(Entry { line: 2, .. })),
            "{got:?}"
        );
    }
}
