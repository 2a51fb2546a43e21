//! IAM identity-policy evaluation, as much of it as the template uses:
//! `Allow`/`Deny` statements over `Action` and `Resource` (with `*` and `?`
//! wildcards) and the condition operators below. An explicit deny wins, then
//! any allow, else the implicit deny. A statement using anything else
//! (`NotAction`, `NotResource`, an unknown condition operator) is refused
//! when the template is read, so an unknown construct never turns into a
//! permission.

use std::collections::BTreeMap;

use crate::template::{BoxError, Resolved};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnLike,
    Bool,
}

impl Operator {
    fn parse(s: &str) -> Result<Self, BoxError> {
        Ok(match s {
            "StringEquals" => Operator::StringEquals,
            "StringNotEquals" => Operator::StringNotEquals,
            "StringLike" => Operator::StringLike,
            "StringNotLike" => Operator::StringNotLike,
            "ArnEquals" => Operator::ArnEquals,
            "ArnLike" => Operator::ArnLike,
            "Bool" => Operator::Bool,
            other => return Err(format!("condition operator {other} is not supported").into()),
        })
    }

    /// Whether the request's value for the key satisfies the operator with
    /// any of `values`. A key absent from the request fails every positive
    /// operator and passes the negated ones, as in IAM.
    fn test(self, actual: Option<&str>, values: &[String]) -> bool {
        let Some(a) = actual else {
            return matches!(self, Operator::StringNotEquals | Operator::StringNotLike);
        };
        match self {
            Operator::StringEquals | Operator::ArnEquals => values.iter().any(|v| v == a),
            Operator::StringNotEquals => values.iter().all(|v| v != a),
            Operator::StringLike | Operator::ArnLike => values.iter().any(|v| glob(v, a, false)),
            Operator::StringNotLike => values.iter().all(|v| !glob(v, a, false)),
            Operator::Bool => values.iter().any(|v| v.eq_ignore_ascii_case(a)),
        }
    }
}

/// One statement of an identity policy.
#[derive(Clone, Debug)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    /// operator -> key -> values
    conditions: Vec<(Operator, String, Vec<String>)>,
}

impl Statement {
    pub fn from_resolved(s: &Resolved) -> Result<Self, BoxError> {
        let Resolved::Map(m) = s else {
            return Err(format!("a statement is a mapping, not {s:?}").into());
        };
        for key in m.keys() {
            if !matches!(
                key.as_str(),
                "Effect" | "Action" | "Resource" | "Condition" | "Sid"
            ) {
                return Err(format!("statement key {key} is not supported locally").into());
            }
        }
        let effect = match m.get("Effect").and_then(Resolved::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => return Err(format!("statement Effect {other:?}").into()),
        };
        let actions = m
            .get("Action")
            .ok_or("statement without Action")?
            .strings()?;
        let resources = m
            .get("Resource")
            .ok_or("statement without Resource")?
            .strings()?;
        let mut conditions = Vec::new();
        if let Some(Resolved::Map(ops)) = m.get("Condition") {
            for (op, keys) in ops {
                let op = Operator::parse(op)?;
                let Resolved::Map(keys) = keys else {
                    return Err("condition keys are a mapping".into());
                };
                for (key, values) in keys {
                    conditions.push((op, key.clone(), values.strings()?));
                }
            }
        }
        Ok(Statement {
            effect,
            actions,
            resources,
            conditions,
        })
    }

    /// Whether this statement applies to the request.
    pub fn matches(&self, action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
        self.actions.iter().any(|a| glob(a, action, true))
            && self.resources.iter().any(|r| glob(r, resource, false))
            && self.conditions.iter().all(|(op, key, values)| {
                let actual = context
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| *v);
                op.test(actual, values)
            })
    }
}

/// A role's identity policy: its statements, in template order.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// Why a request was or was not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by these statements (indexes into the policy).
    Allowed(Vec<usize>),
    /// An explicit deny, by this statement.
    Denied(usize),
    /// No statement allows it.
    NotAllowed,
}

impl Policy {
    pub fn new(statements: Vec<Statement>) -> Self {
        Policy { statements }
    }

    pub fn decide(&self, action: &str, resource: &str, context: &[(&str, &str)]) -> Decision {
        let mut allowed = Vec::new();
        for (i, s) in self.statements.iter().enumerate() {
            if s.matches(action, resource, context) {
                match s.effect {
                    Effect::Deny => return Decision::Denied(i),
                    Effect::Allow => allowed.push(i),
                }
            }
        }
        if allowed.is_empty() {
            Decision::NotAllowed
        } else {
            Decision::Allowed(allowed)
        }
    }

    pub fn allows(&self, action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
        matches!(self.decide(action, resource, context), Decision::Allowed(_))
    }

    /// Every (action pattern, resource pattern) the policy allows, for
    /// reports.
    pub fn grants(&self) -> BTreeMap<usize, (Vec<String>, Vec<String>)> {
        self.statements
            .iter()
            .enumerate()
            .filter(|(_, s)| s.effect == Effect::Allow)
            .map(|(i, s)| (i, (s.actions.clone(), s.resources.clone())))
            .collect()
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
/// Actions compare without regard to case; resources with it.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_ascii_lowercase().chars().collect(),
            text.to_ascii_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(effect: &str, action: &str, resource: &str) -> Resolved {
        Resolved::Map(
            [
                ("Effect".to_owned(), Resolved::Str(effect.into())),
                ("Action".to_owned(), Resolved::Str(action.into())),
                ("Resource".to_owned(), Resolved::Str(resource.into())),
            ]
            .into(),
        )
    }

    #[test]
    fn wildcards_match_as_in_iam() {
        assert!(glob(
            "arn:aws:s3:::b/originals/*",
            "arn:aws:s3:::b/originals/x",
            false
        ));
        assert!(!glob(
            "arn:aws:s3:::b/originals/*",
            "arn:aws:s3:::b/converted/x",
            false
        ));
        assert!(glob("s3:Get*", "s3:getobject", true));
        assert!(glob("a?c", "abc", false));
        assert!(!glob("a?c", "ac", false));
        assert!(glob("*", "", false));
        assert!(!glob("arn:aws:s3:::b", "arn:aws:s3:::b/x", false));
        assert!(glob("*a*b*", "xxaxxbxx", false));
        assert!(!glob("ARN", "arn", false));
    }

    #[test]
    fn deny_wins_and_nothing_is_allowed_by_default() {
        let p = Policy::new(vec![
            Statement::from_resolved(&statement("Allow", "s3:*", "arn:aws:s3:::b/*")).unwrap(),
            Statement::from_resolved(&statement("Deny", "s3:DeleteObject", "*")).unwrap(),
        ]);
        assert_eq!(
            p.decide("s3:GetObject", "arn:aws:s3:::b/k", &[]),
            Decision::Allowed(vec![0])
        );
        assert_eq!(
            p.decide("s3:DeleteObject", "arn:aws:s3:::b/k", &[]),
            Decision::Denied(1)
        );
        assert_eq!(
            p.decide("sqs:SendMessage", "arn:aws:sqs:r:1:q", &[]),
            Decision::NotAllowed
        );
    }

    #[test]
    fn conditions_need_their_key_in_the_request() {
        let mut s = statement("Allow", "s3:ListBucket", "arn:aws:s3:::b");
        if let Resolved::Map(m) = &mut s {
            m.insert(
                "Condition".into(),
                Resolved::Map(
                    [(
                        "StringLike".to_owned(),
                        Resolved::Map(
                            [("s3:prefix".to_owned(), Resolved::Str("converted/*".into()))].into(),
                        ),
                    )]
                    .into(),
                ),
            );
        }
        let p = Policy::new(vec![Statement::from_resolved(&s).unwrap()]);
        assert!(p.allows(
            "s3:ListBucket",
            "arn:aws:s3:::b",
            &[("s3:prefix", "converted/x")]
        ));
        assert!(!p.allows(
            "s3:ListBucket",
            "arn:aws:s3:::b",
            &[("s3:prefix", "originals/")]
        ));
        // No s3:prefix in the request (a HEAD's implicit list check): no.
        assert!(!p.allows("s3:ListBucket", "arn:aws:s3:::b", &[]));
    }

    #[test]
    fn unknown_constructs_are_refused() {
        let mut s = statement("Allow", "s3:*", "*");
        if let Resolved::Map(m) = &mut s {
            m.insert("NotAction".into(), Resolved::Str("x".into()));
        }
        assert!(Statement::from_resolved(&s).is_err());
    }
}
