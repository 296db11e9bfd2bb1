//! Property tests of the filter language: JSON round trips, `Not` as negation, negated
//! operators as the negation of their positive twins, fuzzy matching against a full
//! Levenshtein distance, globs against `globset` and a backtracking matcher, and parsing that
//! never panics.

use proptest::prelude::*;

use super::*;

fn scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        (-1e9f64..1e9).prop_map(Json::from),
        "[a-c]{0,3}".prop_map(Json::from),
    ]
}

fn operand(op: Op) -> BoxedStrategy<Json> {
    let list = prop::collection::vec(scalar(), 0..4).prop_map(Json::Array);
    let ref_new = "[a-c]{1,2}".prop_map(|a| json!({ "$ref_new": a }));
    match op {
        Op::Eq | Op::NotEq => prop_oneof![scalar(), list, Just(Json::Null), ref_new].boxed(),
        Op::In | Op::NotIn | Op::ContainsAny | Op::NotContainsAny => prop_oneof![list, ref_new].boxed(),
        Op::Glob | Op::NotGlob | Op::IGlob | Op::NotIGlob => {
            "[ab*?]{0,4}(\\[!?[a-c]\\])?".prop_map(Json::from).boxed()
        }
        Op::Regex => "[a-c]{0,3}(\\.\\*)?".prop_map(Json::from).boxed(),
        Op::Fuzzy => "[a-c]{0,4}".prop_map(Json::from).boxed(),
        Op::ContainsAllTokens | Op::ContainsAnyToken | Op::ContainsTokenSequence => prop_oneof![
            "[a-c ]{0,6}".prop_map(Json::from),
            prop::collection::vec("[a-c]{1,2}", 0..3).prop_map(|v| json!(v)),
        ]
        .boxed(),
        _ => prop_oneof![scalar(), ref_new].boxed(),
    }
}

fn leaf() -> impl Strategy<Value = Json> {
    (prop::sample::select(Op::ALL.to_vec()), prop::sample::select(vec!["a", "b", "c", "id", "And"]))
        .prop_flat_map(|(op, attr)| {
            let fuzzy_opts = (any::<Option<u8>>(), any::<Option<bool>>()).prop_map(|(d, cs)| {
                let mut m = Map::new();
                if let Some(d) = d {
                    m.insert("max_edit_distance".into(), json!(d % 3));
                }
                if let Some(cs) = cs {
                    m.insert("case_sensitive".into(), json!(cs));
                }
                m
            });
            (operand(op), prop::option::of(fuzzy_opts)).prop_map(move |(v, opts)| match opts {
                Some(o) if op == Op::Fuzzy => json!([attr, op.as_str(), v, o]),
                _ => json!([attr, op.as_str(), v]),
            })
        })
}

fn filter_json() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!(["And", v])),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!(["Or", v])),
            inner.prop_map(|v| json!(["Not", v])),
        ]
    })
}

fn doc_strategy() -> impl Strategy<Value = Document> {
    let value = prop_oneof![scalar(), prop::collection::vec(scalar(), 0..3).prop_map(Json::Array)];
    prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), value, 0..3).prop_map(|m| {
        let mut d = Document::new(DocId::U64(3));
        for (k, v) in m {
            if let Ok(v) = Value::from_json(&v) {
                d.attrs.insert(k.to_owned(), v);
            }
        }
        d
    })
}

/// A star-free token of a long glob, with a character it matches (the last
/// three only case-insensitively).
fn long_glob_token() -> impl Strategy<Value = (&'static str, char)> {
    prop_oneof![8 => Just(("a", 'a')), 4 => Just(("?", 'b')), 4 => Just(("?", 'é')), 2 => Just(("[ab]", 'b')),
        2 => Just(("[!b]", 'a')), 1 => Just(("b", 'b')), 1 => Just(("é", 'é')), 1 => Just(("[É]", 'É')),
        1 => Just(("é", 'É')), 1 => Just(("[É]", 'é')), 1 => Just(("a", 'A'))]
}

fn long_glob_char() -> impl Strategy<Value = char> {
    prop_oneof![12 => Just('a'), 1 => Just('b'), 1 => Just('é'), 1 => Just('A'), 1 => Just('É')]
}

proptest! {
    #[test]
    fn round_trips_through_json(v in filter_json()) {
        let parsed = Filter::parse(&v).map_err(|e| TestCaseError::fail(format!("{v}: {e}")))?;
        let canonical = parsed.to_json();
        prop_assert_eq!(Filter::parse(&canonical), Ok(parsed.clone()));
        // The canonical form is a fixed point.
        prop_assert_eq!(Filter::parse(&canonical).map(|f| f.to_json()), Ok(canonical));
    }

    #[test]
    fn not_is_negation(v in filter_json(), d in doc_strategy(), n in doc_strategy()) {
        let parsed = Filter::parse(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let negated = Filter::parse(&json!(["Not", v])).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(negated.matches(&d, Some(&n)), !parsed.matches(&d, Some(&n)));
    }

    #[test]
    fn not_ops_negate_positive_ops(l in leaf(), d in doc_strategy(), n in doc_strategy()) {
        let pairs = [("Eq", "NotEq"), ("In", "NotIn"), ("Contains", "NotContains"),
            ("ContainsAny", "NotContainsAny"), ("Glob", "NotGlob"), ("IGlob", "NotIGlob")];
        let Json::Array(mut items) = l else { return Err(TestCaseError::fail("leaf")) };
        let Some(op) = items.get(1).and_then(Json::as_str).map(str::to_owned) else {
            return Err(TestCaseError::fail("op"));
        };
        if let Some((pos, neg)) = pairs.iter().find(|(p, _)| *p == op) {
            let p = Filter::parse(&Json::Array(items.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?;
            items[1] = json!(neg);
            let q = Filter::parse(&Json::Array(items)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(p.matches(&d, Some(&n)), !q.matches(&d, Some(&n)), "{} vs {}", pos, neg);
        }
    }

    #[test]
    fn fuzzy_band_agrees_with_full_levenshtein(a in "[ab]{0,7}", b in "[ab]{0,7}", k in 0usize..3) {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        prop_assert_eq!(within_edit_distance(&a, &b, k), levenshtein(&a, &b) <= k);
    }

    #[test]
    fn glob_agrees_with_globset(p in "([ab?]|\\*|\\[!?[a-c]-?[a-c]?\\]){0,5}", t in "[abc]{0,6}", ci in any::<bool>()) {
        prop_assume!(!p.contains("**"));
        let ours = GlobPattern::new(&p, ci).map(|g| g.is_match(&t));
        let theirs = globset::GlobBuilder::new(&p)
            .literal_separator(false)
            .case_insensitive(ci)
            .build()
            .map(|g| g.compile_matcher().is_match(&t));
        if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
            prop_assert_eq!(ours, theirs, "pattern {:?} text {:?}", p, t);
        }
    }

    #[test]
    fn glob_agrees_with_backtracking(
        p in "([aAbé?]|\\*|\\\\[*?a\\[]|\\[[!^]?[aAbé\\]]-?[aBé]?\\]){0,8}",
        t in "[aAbBéÉx]{0,12}",
        ci in any::<bool>(),
    ) {
        if let Ok(g) = GlobPattern::new(&p, ci) {
            prop_assert_eq!(g.is_match(&t), backtracking_glob(&g, &t), "pattern {:?} text {:?} ci {}", p, t, ci);
        }
    }

    #[test]
    fn long_globs_agree_with_backtracking(
        pieces in prop::collection::vec(
            (prop::collection::vec(long_glob_token(), 0..140), prop::collection::vec(long_glob_char(), 0..20)),
            1..4,
        ),
        (lead, trail) in (any::<bool>(), any::<bool>()),
        flip in prop::option::of((any::<prop::sample::Index>(), long_glob_char())),
        ci in any::<bool>(),
    ) {
        // The text instantiates each piece after some filler (so long
        // pieces do occur, across mask words), then maybe one character
        // changes.
        let mut text: Vec<char> = Vec::new();
        for (tokens, filler) in &pieces {
            text.extend(filler);
            text.extend(tokens.iter().map(|(_, c)| *c));
        }
        if let Some((at, c)) = flip.filter(|_| !text.is_empty()) {
            let i = at.index(text.len());
            text[i] = c;
        }
        let pieces: Vec<String> =
            pieces.iter().map(|(tokens, _)| tokens.iter().map(|(p, _)| *p).collect()).collect();
        let p = format!("{}{}{}", if lead { "*" } else { "" }, pieces.join("*"), if trail { "*" } else { "" });
        let t: String = text.into_iter().collect();
        let g = GlobPattern::new(&p, ci).unwrap();
        prop_assert_eq!(g.is_match(&t), backtracking_glob(&g, &t), "pattern {:?} text {:?} ci {}", p, t, ci);
    }

    #[test]
    fn parse_never_panics(v in filter_json(), junk in prop::collection::vec(scalar(), 0..4)) {
        let _ = Filter::parse(&v);
        let _ = Filter::parse(&Json::Array(junk));
    }
}

#[test]
fn condition_new_builds_leaves_beyond_the_api_limits() {
    let long = "a".repeat(MAX_PATTERN_BYTES + 1);
    let json = json!(["s", "Glob", long.clone()]);
    assert!(parse_err(json.clone()).contains("the limit is"));
    let c = Condition::new("s", Op::Glob, LeafOperand::Pattern(long)).unwrap();
    assert_eq!(c.to_json(), json);
    let fuzzy = LeafOperand::Fuzzy { text: "abc".into(), max_edit_distance: 5, case_sensitive: true };
    let c = Condition::new("s", Op::Fuzzy, fuzzy.clone()).unwrap();
    assert!(Filter::Cond(c.clone()).matches(&doc(json!({"s": "xyzab"})), None), "distance 4 is within 5");
    assert_eq!(c.leaf_operand(), fuzzy);
    let tokens = LeafOperand::TokenText("w ".repeat(MAX_TOKEN_QUERY_BYTES));
    assert!(Condition::new("b", Op::ContainsAnyToken, tokens).is_ok());
}

#[test]
fn condition_new_keeps_leaves_well_formed() {
    let value = |v: Value| LeafOperand::Value(Operand::Value(v));
    let bad = [
        ("a", Op::In, value(Value::Int(1))),
        ("a", Op::Lt, value(Value::Null)),
        ("a", Op::Lt, value(Value::Array(vec![Value::Int(1)]))),
        ("a", Op::Eq, value(Value::Float(f64::NAN))),
        ("a", Op::Eq, value(Value::Array(vec![Value::Null]))),
        ("a", Op::Eq, value(Value::Array(vec![Value::Array(vec![])]))),
        ("a", Op::Eq, value(Value::Sparse(vec![]))),
        ("a", Op::Eq, LeafOperand::Value(Operand::RefNew(String::new()))),
        ("", Op::Eq, value(Value::Int(1))),
        ("s", Op::Glob, value(Value::Str("x".into()))),
        ("s", Op::Regex, LeafOperand::Pattern("(".into())),
        ("s", Op::Glob, LeafOperand::Pattern("[a".into())),
        ("s", Op::Eq, LeafOperand::Pattern("x".into())),
        ("b", Op::ContainsAllTokens, LeafOperand::Pattern("x".into())),
        ("s", Op::Fuzzy, LeafOperand::TokenText("x".into())),
    ];
    for (attr, op, operand) in bad {
        assert!(Condition::new(attr, op, operand.clone()).is_err(), "{attr} {op} {operand:?}");
    }
    // What `new` builds gives back the parts it took, for every operator.
    for op in Op::ALL {
        let operand = match op {
            Op::In | Op::NotIn | Op::ContainsAny | Op::NotContainsAny => {
                value(Value::Array(vec![Value::Int(1)]))
            }
            Op::Glob | Op::NotGlob | Op::IGlob | Op::NotIGlob | Op::Regex => {
                LeafOperand::Pattern("a.*".into())
            }
            Op::Fuzzy => LeafOperand::Fuzzy { text: "x".into(), max_edit_distance: 1, case_sensitive: false },
            op if op.is_token_op() => LeafOperand::Tokens(vec!["t".into()]),
            _ => value(Value::Int(1)),
        };
        let c = Condition::new("a", op, operand.clone()).unwrap();
        assert_eq!((c.attr(), c.op(), c.leaf_operand()), ("a", op, operand));
    }
}

/// Pathological regexes over a 4 MiB value, timed (the `regex` crate's lazy
/// DFA, falling back when its cache thrashes):
/// `cargo test --lib filter::tests::regex_timing -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn regex_timing() {
    // `c`, `x` and `z` every ~1,000 characters, so a literal prefilter
    // cannot skip the text, and no match.
    let text = ("ab".repeat(500) + "czx").repeat(4 << 10);
    for pattern in [
        "(a|aa)*c$".to_owned(),
        "(a|ab)*c".to_owned(),
        ".{0,1000}x".to_owned(),
        "(?:ab){499}ac".to_owned(),
        "[ab]*a[ab]{20}c".to_owned(),
        "(?:[ab]*a[ab]{200})x".to_owned(),
        "(?i)(?:\\w+\\s*){1,100}x".to_owned(),
        "[ab]*a[ab]{18}b".to_owned(),
        "[ab]*b[ab]{30}b[ab]{3}a".to_owned(),
        "\\w*a\\w{30}\\W".to_owned(),
        "(?:.*a){20}z".to_owned(),
        "(?:a|b|ab|ba)*(?:[ab]{40})c".to_owned(),
    ] {
        let r = RegexPattern::new(&pattern);
        let Ok(r) = r else {
            println!("{pattern}: refused ({:?})", r.err());
            continue;
        };
        let t = std::time::Instant::now();
        let hit = r.regex.is_match(&text);
        println!("{pattern}: {:?} ({hit})", t.elapsed());
    }
}
