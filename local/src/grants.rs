//! The grants of `template.yaml`, one (action, resource) pair at a time, and
//! the template with any one of them taken away: `scripts/check-grants` runs
//! the integration tests once per grant against such a template and fails
//! unless some test fails, so no grant is there without a test that needs
//! it, and none can go missing unnoticed.

use serde_norway::{Mapping, Value};

use crate::template::BoxError;

/// One grant: `action` on the `resource`-th resource of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub function: String,
    pub policy: usize,
    pub statement: usize,
    /// None for a conditional (`!If`) statement, taken away whole.
    pub action: Option<String>,
    pub resource: Option<usize>,
}

impl Grant {
    /// `Function/policy/statement[/action/resource]`, as the command line
    /// takes it.
    pub fn id(&self) -> String {
        match (&self.action, self.resource) {
            (Some(a), Some(r)) => format!(
                "{}/{}/{}/{a}/{r}",
                self.function, self.policy, self.statement
            ),
            _ => format!("{}/{}/{}", self.function, self.policy, self.statement),
        }
    }

    pub fn parse(id: &str) -> Result<Self, BoxError> {
        let p: Vec<&str> = id.split('/').collect();
        let bad = || format!("not a grant id: {id}");
        match p.as_slice() {
            [f, pol, st] => Ok(Grant {
                function: f.to_string(),
                policy: pol.parse().map_err(|_| bad())?,
                statement: st.parse().map_err(|_| bad())?,
                action: None,
                resource: None,
            }),
            [f, pol, st, a, r] => Ok(Grant {
                function: f.to_string(),
                policy: pol.parse().map_err(|_| bad())?,
                statement: st.parse().map_err(|_| bad())?,
                action: Some(a.to_string()),
                resource: Some(r.parse().map_err(|_| bad())?),
            }),
            _ => Err(bad().into()),
        }
    }
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Sequence(s) => s.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// The statements of a function's code: its role's `calls` policy.
fn statements<'a>(doc: &'a Value, function: &str) -> Vec<(usize, &'a Vec<Value>)> {
    let Ok((role, i)) = crate::template::calls_policy(doc, function) else {
        return Vec::new();
    };
    doc["Resources"][role.as_str()]["Properties"]["Policies"][i]["PolicyDocument"]["Statement"]
        .as_sequence()
        .map(|ss| vec![(i, ss)])
        .unwrap_or_default()
}

/// Every allow grant of every function.
pub fn grants(text: &str) -> Result<Vec<Grant>, BoxError> {
    let doc: Value = serde_norway::from_str(text)?;
    let mut out = Vec::new();
    for (name, r) in doc["Resources"].as_mapping().ok_or("no Resources")? {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let function = name.as_str().unwrap_or_default();
        for (policy, ss) in statements(&doc, function) {
            for (statement, s) in ss.iter().enumerate() {
                if matches!(s, Value::Tagged(_)) {
                    out.push(Grant {
                        function: function.to_owned(),
                        policy,
                        statement,
                        action: None,
                        resource: None,
                    });
                    continue;
                }
                if s["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                for a in list(&s["Action"]) {
                    for (r, _) in list(&s["Resource"]).iter().enumerate() {
                        out.push(Grant {
                            function: function.to_owned(),
                            policy,
                            statement,
                            action: Some(a.as_str().unwrap_or_default().to_owned()),
                            resource: Some(r),
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The template without `grant`: its statement is split into what remains
/// (the other actions on every resource, and the action on the other
/// resources).
pub fn without(text: &str, grant: &Grant) -> Result<String, BoxError> {
    let mut doc: Value = serde_norway::from_str(text)?;
    let (role, _) = crate::template::calls_policy(&doc, &grant.function)?;
    let ss = doc["Resources"][role.as_str()]["Properties"]["Policies"][grant.policy]
        ["PolicyDocument"]["Statement"]
        .as_sequence_mut()
        .ok_or_else(|| format!("{}: no such statement list", grant.id()))?;
    if grant.statement >= ss.len() {
        return Err(format!("{}: no such statement", grant.id()).into());
    }
    let s = ss.remove(grant.statement);
    let (Some(action), Some(resource)) = (&grant.action, grant.resource) else {
        return Ok(serde_norway::to_string(&doc)?);
    };
    let actions = list(&s["Action"]);
    let resources = list(&s["Resource"]);
    if !actions.iter().any(|a| a.as_str() == Some(action.as_str())) || resource >= resources.len() {
        return Err(format!(
            "{}: the statement grants no such action on such a resource",
            grant.id()
        )
        .into());
    }
    let others: Vec<Value> = actions
        .iter()
        .filter(|a| a.as_str() != Some(action))
        .cloned()
        .collect();
    let rest: Vec<Value> = resources
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != resource)
        .map(|(_, r)| r.clone())
        .collect();
    let with = |actions: Vec<Value>, resources: Vec<Value>| {
        let mut m: Mapping = s.as_mapping().cloned().unwrap_or_default();
        m.insert("Action".into(), Value::Sequence(actions));
        m.insert("Resource".into(), Value::Sequence(resources));
        Value::Mapping(m)
    };
    let mut insert_at = grant.statement;
    if !others.is_empty() {
        ss.insert(insert_at, with(others, resources.clone()));
        insert_at += 1;
    }
    if !rest.is_empty() {
        ss.insert(insert_at, with(vec![Value::String(action.clone())], rest));
    }
    Ok(serde_norway::to_string(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Physical, Stack, Template};

    const DOC: &str = r#"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Role: !GetAtt FnRole.Arn
  FnRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: calls
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [s3:GetObject, s3:PutObject]
                Resource: [!Sub "${B.Arn}/a/*", !Sub "${B.Arn}/b/*"]
              - Effect: Allow
                Action: s3:ListBucket
                Resource: !GetAtt B.Arn
"#;

    fn policy(text: &str) -> crate::iam::Policy {
        let stack = Stack::new("s", "1", "r").resource("B", Physical::bucket("b"));
        Template::parse(text, stack)
            .unwrap()
            .function_policy("Fn")
            .unwrap()
    }

    #[test]
    fn each_action_on_each_resource_is_one_grant() {
        let g = grants(DOC).unwrap();
        assert_eq!(g.len(), 5);
        assert_eq!(g[1].id(), "Fn/0/0/s3:GetObject/1");
        assert_eq!(Grant::parse(&g[1].id()).unwrap(), g[1]);
    }

    #[test]
    fn taking_one_grant_away_leaves_all_the_others() {
        let g = Grant::parse("Fn/0/0/s3:GetObject/1").unwrap();
        let p = policy(&without(DOC, &g).unwrap());
        assert!(!p.allows("s3:GetObject", "arn:aws:s3:::b/b/x", &[]));
        assert!(p.allows("s3:GetObject", "arn:aws:s3:::b/a/x", &[]));
        assert!(p.allows("s3:PutObject", "arn:aws:s3:::b/b/x", &[]));
        assert!(p.allows("s3:PutObject", "arn:aws:s3:::b/a/x", &[]));
        assert!(p.allows("s3:ListBucket", "arn:aws:s3:::b", &[]));
        let g = Grant::parse("Fn/0/1/s3:ListBucket/0").unwrap();
        let p = policy(&without(DOC, &g).unwrap());
        assert!(!p.allows("s3:ListBucket", "arn:aws:s3:::b", &[]));
        assert!(p.allows("s3:GetObject", "arn:aws:s3:::b/b/x", &[]));
        // A grant the statement does not hold is an error, not a guess.
        assert!(without(DOC, &Grant::parse("Fn/0/1/s3:GetObject/0").unwrap()).is_err());
        assert!(without(DOC, &Grant::parse("Fn/0/0/s3:GetObject/2").unwrap()).is_err());
    }
}
