//! `template.yaml`, read the way CloudFormation would read it for a stack of
//! local resources: parameters (defaults, overridable), conditions, and the
//! intrinsic functions the template uses (`!Ref`, `!GetAtt`, `!Sub`, `!If`,
//! `!Equals`, `!Not`, `!And`, `!Or`, `!Select`, `!Join`), each resource
//! bound to its local counterpart (the bucket in moto, the queues, the
//! secrets).
//!
//! The local stack takes from here what it must not copy by hand: each
//! function's IAM policy ([`Template::function_policy`]) and the bucket's
//! CORS rule. Whatever the resolver does not know is an error, never a guess:
//! a construct it cannot evaluate would otherwise turn into a permission the
//! template does not grant.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::iam::Policy;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The template of this checkout, or `IMAGEGRAM_TEMPLATE`.
pub fn default_path() -> PathBuf {
    std::env::var_os("IMAGEGRAM_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml").into())
}

/// What a logical resource is locally: what `!Ref` gives and its attributes.
#[derive(Clone, Debug, Default)]
pub struct Physical {
    pub reference: String,
    pub attributes: BTreeMap<String, String>,
}

impl Physical {
    pub fn bucket(name: &str) -> Self {
        Physical {
            reference: name.to_owned(),
            attributes: [
                ("Arn".to_owned(), format!("arn:aws:s3:::{name}")),
                (
                    "RegionalDomainName".to_owned(),
                    format!("{name}.s3.localhost"),
                ),
            ]
            .into(),
        }
    }

    /// A queue: `!Ref` is its URL.
    pub fn queue(url: &str, arn: &str) -> Self {
        let name = arn.rsplit(':').next().unwrap_or_default();
        Physical {
            reference: url.to_owned(),
            attributes: [
                ("Arn".to_owned(), arn.to_owned()),
                ("QueueName".to_owned(), name.to_owned()),
                ("QueueUrl".to_owned(), url.to_owned()),
            ]
            .into(),
        }
    }

    /// A Secrets Manager secret: `!Ref` is its ARN.
    pub fn secret(arn: &str) -> Self {
        Physical {
            reference: arn.to_owned(),
            attributes: [("Id".to_owned(), arn.to_owned())].into(),
        }
    }
}

/// The pseudo parameters, parameter values and physical resources that a
/// deployment of the template would have, made of local parts.
#[derive(Clone, Debug)]
pub struct Stack {
    pub name: String,
    pub account: String,
    pub region: String,
    pub parameters: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Physical>,
    /// Resolve unbound resources and parameters to `<Name>` instead of
    /// failing: for reports that show statements, never for decisions.
    pub placeholders: bool,
}

impl Stack {
    pub fn new(name: &str, account: &str, region: &str) -> Self {
        Stack {
            name: name.to_owned(),
            account: account.to_owned(),
            region: region.to_owned(),
            parameters: BTreeMap::new(),
            resources: BTreeMap::new(),
            placeholders: false,
        }
    }

    pub fn resource(mut self, logical_id: &str, physical: Physical) -> Self {
        self.resources.insert(logical_id.to_owned(), physical);
        self
    }

    pub fn parameter(mut self, name: &str, value: &str) -> Self {
        self.parameters.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// The parsed template plus the stack it is evaluated for.
pub struct Template {
    doc: Value,
    stack: Stack,
    conditions: BTreeMap<String, bool>,
}

/// A resolved value: a string, a list, `AWS::NoValue` (dropped), or a
/// structure whose leaves are resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    Str(String),
    List(Vec<Resolved>),
    Map(BTreeMap<String, Resolved>),
    Bool(bool),
    Number(String),
    NoValue,
}

impl Resolved {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Resolved::Str(s) | Resolved::Number(s) => Some(s),
            _ => None,
        }
    }

    /// A string or a list of strings, as IAM's `Action` and `Resource` are.
    pub fn strings(&self) -> Result<Vec<String>, BoxError> {
        match self {
            Resolved::Str(s) | Resolved::Number(s) => Ok(vec![s.clone()]),
            Resolved::Bool(b) => Ok(vec![b.to_string()]),
            Resolved::List(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .or_else(|| match i {
                            Resolved::Bool(b) => Some(b.to_string()),
                            _ => None,
                        })
                        .ok_or_else(|| format!("expected a string, got {i:?}").into())
                })
                .collect(),
            other => Err(format!("expected a string or list, got {other:?}").into()),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Resolved> {
        match self {
            Resolved::Map(m) => m.get(key),
            _ => None,
        }
    }
}

impl Template {
    pub fn load(path: &Path, stack: Stack) -> Result<Self, BoxError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text, stack)
    }

    pub fn parse(text: &str, mut stack: Stack) -> Result<Self, BoxError> {
        let doc: Value = serde_norway::from_str(text)?;
        // Parameter defaults, then what the stack sets.
        if let Some(params) = doc["Parameters"].as_mapping() {
            for (name, spec) in params {
                let name = name.as_str().ok_or("parameter names are strings")?;
                if stack.parameters.contains_key(name) {
                    continue;
                }
                let default = match &spec["Default"] {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                };
                if let Some(d) = default {
                    stack.parameters.insert(name.to_owned(), d);
                }
            }
        }
        let mut t = Template {
            doc,
            stack,
            conditions: BTreeMap::new(),
        };
        let conditions: Vec<(String, Value)> = t.doc["Conditions"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        // Conditions may refer to each other; evaluate until all are known.
        let mut pending = conditions;
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for (name, expr) in pending {
                match t.condition(&expr) {
                    Ok(v) => {
                        t.conditions.insert(name, v);
                    }
                    Err(_) => still.push((name, expr)),
                }
            }
            if still.len() == before {
                let (name, expr) = &still[0];
                return Err(format!(
                    "condition {name} cannot be evaluated: {}",
                    t.condition(expr).unwrap_err()
                )
                .into());
            }
            pending = still;
        }
        Ok(t)
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }

    pub fn condition_named(&self, name: &str) -> Option<bool> {
        self.conditions.get(name).copied()
    }

    /// The resource's `Properties` (its raw YAML).
    pub fn properties(&self, logical_id: &str) -> Result<&Value, BoxError> {
        let r = &self.doc["Resources"][logical_id];
        if r.is_null() {
            return Err(format!("template.yaml has no resource {logical_id}").into());
        }
        Ok(&r["Properties"])
    }

    /// The IAM policy of a function's code: every statement of the `calls`
    /// policy of its role (`Role: !GetAtt XRole.Arn`), resolved for this
    /// stack. Only inline statements are understood; a managed policy is
    /// an error, so that what a role may do is always spelled out in the
    /// template itself. The role's `lambda-service` policy (logs, event
    /// source polling, network interfaces) is the Lambda service's, not the
    /// code's: the guard never grants it.
    pub fn function_policy(&self, function: &str) -> Result<Policy, BoxError> {
        let (role, index) = calls_policy(&self.doc, function)?;
        let role_props = self.properties(&role)?;
        if !role_props["ManagedPolicyArns"].is_null() {
            return Err(
                format!("{role}: managed policies are not supported; spell the grant out").into(),
            );
        }
        let list = &role_props["Policies"][index]["PolicyDocument"]["Statement"];
        let Resolved::List(ss) = self.resolve(list)? else {
            return Err(format!("{role}: the calls policy's Statement is not a list").into());
        };
        let mut statements = Vec::new();
        for s in &ss {
            if *s != Resolved::NoValue {
                statements.push(crate::iam::Statement::from_resolved(s)?);
            }
        }
        Ok(Policy::new(statements))
    }

    /// Resolves every intrinsic function in `v`.
    pub fn resolve(&self, v: &Value) -> Result<Resolved, BoxError> {
        Ok(match v {
            Value::Null => Resolved::NoValue,
            Value::Bool(b) => Resolved::Bool(*b),
            Value::Number(n) => Resolved::Number(n.to_string()),
            Value::String(s) => Resolved::Str(s.clone()),
            Value::Sequence(items) => Resolved::List(
                items
                    .iter()
                    .map(|i| self.resolve(i))
                    .filter(|r| !matches!(r, Ok(Resolved::NoValue)))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Mapping(m) => {
                if m.len() == 1 {
                    let (k, arg) = m.iter().next().expect("one entry");
                    if let Some(f) = k.as_str().and_then(|k| {
                        (k == "Ref" || k.starts_with("Fn::"))
                            .then(|| k.trim_start_matches("Fn::").to_owned())
                    }) {
                        return self.function(&f, arg);
                    }
                }
                let mut out = BTreeMap::new();
                for (k, val) in m {
                    let key = k.as_str().ok_or("mapping keys are strings")?.to_owned();
                    let r = self.resolve(val)?;
                    if r != Resolved::NoValue {
                        out.insert(key, r);
                    }
                }
                Resolved::Map(out)
            }
            Value::Tagged(t) => {
                let name = t.tag.to_string();
                self.function(name.trim_start_matches('!'), &t.value)?
            }
        })
    }

    fn function(&self, name: &str, arg: &Value) -> Result<Resolved, BoxError> {
        match name {
            "Ref" => self.reference(arg.as_str().ok_or("!Ref takes a name")?),
            "GetAtt" => {
                let (id, attr) = match arg {
                    Value::String(s) => s.split_once('.').ok_or("!GetAtt takes X.Attr")?,
                    Value::Sequence(p) if p.len() == 2 => (
                        p[0].as_str().ok_or("!GetAtt [X, Attr]")?,
                        p[1].as_str().ok_or("!GetAtt [X, Attr]")?,
                    ),
                    _ => return Err("!GetAtt takes X.Attr".into()),
                };
                self.attribute(id, attr).map(Resolved::Str)
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.as_str(), BTreeMap::new()),
                    Value::Sequence(p) if p.len() == 2 => {
                        let mut vars = BTreeMap::new();
                        for (k, v) in p[1].as_mapping().ok_or("!Sub [text, {vars}]")? {
                            let r = self.resolve(v)?;
                            vars.insert(
                                k.as_str().unwrap_or_default().to_owned(),
                                r.as_str().ok_or("!Sub variables are strings")?.to_owned(),
                            );
                        }
                        (p[0].as_str().ok_or("!Sub [text, {vars}]")?, vars)
                    }
                    _ => return Err("!Sub takes a string or [string, map]".into()),
                };
                self.sub(text, &vars).map(Resolved::Str)
            }
            "If" => {
                let p = arg
                    .as_sequence()
                    .filter(|p| p.len() == 3)
                    .ok_or("!If [c, a, b]")?;
                let cond = p[0].as_str().ok_or("!If names a condition")?;
                let v = self
                    .conditions
                    .get(cond)
                    .copied()
                    .ok_or_else(|| format!("unknown or not yet evaluated condition {cond}"))?;
                self.resolve(if v { &p[1] } else { &p[2] })
            }
            "Join" => {
                let p = arg
                    .as_sequence()
                    .filter(|p| p.len() == 2)
                    .ok_or("!Join [sep, list]")?;
                let sep = p[0].as_str().ok_or("!Join separator")?;
                let parts = self.resolve(&p[1])?.strings()?;
                Ok(Resolved::Str(parts.join(sep)))
            }
            "Select" => {
                let p = arg
                    .as_sequence()
                    .filter(|p| p.len() == 2)
                    .ok_or("!Select [i, list]")?;
                let i: usize = match self.resolve(&p[0])? {
                    Resolved::Str(s) | Resolved::Number(s) => s.parse()?,
                    _ => return Err("!Select index".into()),
                };
                let list = self.resolve(&p[1])?.strings()?;
                list.get(i)
                    .cloned()
                    .map(Resolved::Str)
                    .ok_or_else(|| "!Select out of range".into())
            }
            "Equals" | "Not" | "And" | "Or" | "Condition" => {
                let mut m = serde_norway::Mapping::new();
                m.insert(Value::String(format!("Fn::{name}")), arg.clone());
                self.condition(&Value::Mapping(m)).map(Resolved::Bool)
            }
            other => Err(format!("intrinsic function {other} is not supported locally").into()),
        }
    }

    fn condition(&self, v: &Value) -> Result<bool, BoxError> {
        let (name, arg) = match v {
            Value::Tagged(t) => (
                t.tag.to_string().trim_start_matches('!').to_owned(),
                &t.value,
            ),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, a) = m.iter().next().expect("one entry");
                (
                    k.as_str()
                        .unwrap_or_default()
                        .trim_start_matches("Fn::")
                        .to_owned(),
                    a,
                )
            }
            Value::String(s) => {
                // `!Condition X` inside And/Or is written as a bare name
                // in some templates.
                return self
                    .conditions
                    .get(s)
                    .copied()
                    .ok_or_else(|| format!("unknown condition {s}").into());
            }
            _ => return Err(format!("not a condition: {v:?}").into()),
        };
        let args = || arg.as_sequence().ok_or("condition arguments are a list");
        match name.as_str() {
            "Equals" => {
                let a = args()?;
                if a.len() != 2 {
                    return Err("!Equals takes two values".into());
                }
                Ok(self.resolve(&a[0])? == self.resolve(&a[1])?)
            }
            "Not" => Ok(!self.condition(args()?.first().ok_or("!Not [c]")?)?),
            "And" => args()?
                .iter()
                .try_fold(true, |acc, c| Ok(acc && self.condition(c)?)),
            "Or" => args()?
                .iter()
                .try_fold(false, |acc, c| Ok(acc || self.condition(c)?)),
            "Condition" => {
                let n = arg.as_str().ok_or("!Condition takes a name")?;
                self.conditions
                    .get(n)
                    .copied()
                    .ok_or_else(|| format!("unknown condition {n}").into())
            }
            other => Err(format!("condition function {other} is not supported").into()),
        }
    }

    fn reference(&self, name: &str) -> Result<Resolved, BoxError> {
        if name == "AWS::NoValue" {
            return Ok(Resolved::NoValue);
        }
        if let Some(p) = self.pseudo(name) {
            return Ok(Resolved::Str(p));
        }
        if let Some(v) = self.stack.parameters.get(name) {
            let spec = &self.doc["Parameters"][name];
            let ty = spec["Type"].as_str().unwrap_or("String");
            if ty.starts_with("List<") || ty == "CommaDelimitedList" {
                return Ok(Resolved::List(
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| Resolved::Str(s.trim().to_owned()))
                        .collect(),
                ));
            }
            return Ok(Resolved::Str(v.clone()));
        }
        if let Some(p) = self.stack.resources.get(name) {
            return Ok(Resolved::Str(p.reference.clone()));
        }
        if self.stack.placeholders {
            return Ok(Resolved::Str(format!("<{name}>")));
        }
        if !self.doc["Parameters"][name].is_null() {
            return Err(format!("parameter {name} has no default and no local value").into());
        }
        Err(format!("resource {name} has no local counterpart").into())
    }

    fn attribute(&self, id: &str, attr: &str) -> Result<String, BoxError> {
        if self.stack.placeholders && !self.stack.resources.contains_key(id) {
            return Ok(format!("<{id}.{attr}>"));
        }
        self.stack
            .resources
            .get(id)
            .ok_or_else(|| format!("resource {id} has no local counterpart"))?
            .attributes
            .get(attr)
            .cloned()
            .ok_or_else(|| format!("{id}.{attr} has no local value").into())
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::StackName" => self.stack.name.clone(),
            "AWS::AccountId" => self.stack.account.clone(),
            "AWS::Region" => self.stack.region.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            _ => return None,
        })
    }

    /// `${Name}`, `${Name.Attr}` and `${!Literal}` in a `!Sub` string.
    fn sub(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String, BoxError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or("unclosed ${ in !Sub")?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some((id, attr)) = name.split_once('.')
                && !name.starts_with("AWS::")
            {
                out.push_str(&self.attribute(id, attr)?);
            } else {
                let r = self.reference(name)?;
                out.push_str(
                    r.as_str()
                        .ok_or_else(|| format!("${{{name}}} is not a string"))?,
                );
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The role of `function` and the index, in that role's `Policies`, of the
/// policy named `calls`: the statements of the function's code.
pub fn calls_policy(doc: &Value, function: &str) -> Result<(String, usize), BoxError> {
    let role = &doc["Resources"][function]["Properties"]["Role"];
    let target = match role {
        Value::Tagged(t) if t.tag == "GetAtt" => t.value.as_str().map(str::to_owned),
        Value::Mapping(m) => m
            .get("Fn::GetAtt")
            .and_then(|v| v.as_sequence())
            .and_then(|p| p.first())
            .and_then(|v| v.as_str())
            .map(|id| format!("{id}.Arn")),
        _ => None,
    }
    .ok_or_else(|| {
        format!("{function}: Role is not `!GetAtt <Role>.Arn` of a role of the template's")
    })?;
    let id = target
        .strip_suffix(".Arn")
        .ok_or_else(|| format!("{function}: Role is not a role's Arn"))?
        .to_owned();
    let index = doc["Resources"][id.as_str()]["Properties"]["Policies"]
        .as_sequence()
        .and_then(|ps| {
            ps.iter()
                .position(|p| p["PolicyName"].as_str() == Some("calls"))
        })
        .ok_or_else(|| format!("{id}: no policy named `calls`"))?;
    Ok((id, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
Parameters:
  Cdn:
    Type: String
    Default: "false"
  Issuer:
    Type: String
    Default: ""
Conditions:
  HasCdn: !Equals [!Ref Cdn, "true"]
  NoCdn: !Not [!Condition HasCdn]
  Both: !And [!Condition NoCdn, !Equals [!Ref Issuer, ""]]
Resources:
  Fn:
    Properties:
      Role: !GetAtt FnRole.Arn
  FnRole:
    Properties:
      Policies:
        - PolicyName: calls
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [s3:GetObject]
                Resource: !Sub "${Bucket.Arn}/converted/*"
              - !If
                - HasCdn
                - !Ref AWS::NoValue
                - Effect: Allow
                  Action: s3:ListBucket
                  Resource: !GetAtt Bucket.Arn
              - Effect: Allow
                Action: sqs:SendMessage
                Resource: !Sub "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${Queue.QueueName}"
        - PolicyName: lambda-service
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [sqs:ReceiveMessage]
                Resource: "*"
  Sam:
    Properties:
      Policies:
        - SQSSendMessagePolicy:
            QueueName: x
  Managed:
    Properties:
      Role: !GetAtt ManagedRole.Arn
  ManagedRole:
    Properties:
      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]
      Policies:
        - PolicyName: calls
          PolicyDocument:
            Statement: []
"#;

    fn stack() -> Stack {
        Stack::new("s", "123456789012", "us-east-1")
            .resource("Bucket", Physical::bucket("b"))
            .resource(
                "Queue",
                Physical::queue(
                    "http://q/123456789012/qq",
                    "arn:aws:sqs:us-east-1:123456789012:qq",
                ),
            )
    }

    #[test]
    fn conditions_and_intrinsics_resolve_for_the_local_stack() {
        let t = Template::parse(DOC, stack()).unwrap();
        assert_eq!(t.condition_named("HasCdn"), Some(false));
        assert_eq!(t.condition_named("NoCdn"), Some(true));
        assert_eq!(t.condition_named("Both"), Some(true));
        let p = t.function_policy("Fn").unwrap();
        assert!(p.allows("s3:GetObject", "arn:aws:s3:::b/converted/x.jpg", &[]));
        assert!(!p.allows("s3:GetObject", "arn:aws:s3:::b/originals/x", &[]));
        assert!(p.allows("s3:ListBucket", "arn:aws:s3:::b", &[]));
        assert!(p.allows(
            "sqs:SendMessage",
            "arn:aws:sqs:us-east-1:123456789012:qq",
            &[]
        ));
        // The Lambda service's policy is not the code's.
        assert!(!p.allows(
            "sqs:ReceiveMessage",
            "arn:aws:sqs:us-east-1:123456789012:qq",
            &[]
        ));
    }

    #[test]
    fn a_statement_dropped_by_a_condition_grants_nothing() {
        let t = Template::parse(DOC, stack().parameter("Cdn", "true")).unwrap();
        let p = t.function_policy("Fn").unwrap();
        assert!(!p.allows("s3:ListBucket", "arn:aws:s3:::b", &[]));
    }

    #[test]
    fn sam_policies_and_managed_policies_are_refused_rather_than_guessed() {
        let t = Template::parse(DOC, stack()).unwrap();
        let e = t.function_policy("Sam").unwrap_err().to_string();
        assert!(e.contains("Role"), "{e}");
        let e = t.function_policy("Managed").unwrap_err().to_string();
        assert!(e.contains("managed"), "{e}");
    }

    #[test]
    fn unbound_resources_are_errors() {
        let t = Template::parse(DOC, Stack::new("s", "1", "r")).unwrap();
        assert!(t.function_policy("Fn").is_err());
    }
}
