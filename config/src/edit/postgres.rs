//! Edits of a Postgres cluster's nodes for failover, switchover and rejoin: set `role`,
//! set or remove `fenced`, in whichever shape the nodes are written (`nodes = [{ … }]`
//! inline tables or `[[postgres.clusters.nodes]]` tables), leaving every other byte alone.

use toml_edit::{DocumentMut, InlineTable, Item, TableLike, Value};

use super::{parse, remove_inline, same, set_inline, set_value, EditError};
use crate::model::Address;
use crate::validate::parse_address;

/// What to change in one cluster's nodes (addresses as `host:port`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRoles<'a> {
    /// Make this node the primary; any other primary becomes a replica.
    pub primary: Option<&'a str>,
    /// `role = "replica"` and `fenced = reason`.
    pub fence: &'a [(String, String)],
    /// `role = "replica"`.
    pub demote: &'a [String],
    /// Remove `fenced`.
    pub unfence: &'a [String],
}

/// Apply `roles` to the nodes of cluster `name`. Every named node must exist.
pub fn set_node_roles(text: &str, name: &str, roles: &NodeRoles<'_>) -> Result<String, EditError> {
    let addr = |a: &str| {
        parse_address(a.trim()).map_err(|reason| EditError::BadAddress {
            addr: a.to_string(),
            reason,
        })
    };
    let primary = roles.primary.map(addr).transpose()?;
    let fence: Vec<(Address, &str)> = roles
        .fence
        .iter()
        .map(|(a, why)| Ok((addr(a)?, why.as_str())))
        .collect::<Result<_, EditError>>()?;
    let demote: Vec<Address> = roles
        .demote
        .iter()
        .map(|a| addr(a))
        .collect::<Result<_, _>>()?;
    let unfence: Vec<Address> = roles
        .unfence
        .iter()
        .map(|a| addr(a))
        .collect::<Result<_, _>>()?;
    let mut wanted: Vec<&Address> = primary.iter().collect();
    wanted.extend(fence.iter().map(|(a, _)| a));
    wanted.extend(demote.iter().chain(&unfence));

    let mut doc = parse(text)?;
    let mut seen: Vec<Address> = Vec::new();
    let nodes = nodes_mut(&mut doc, name)?;
    for_each_node(nodes, name, &mut |node| {
        let Some(written) = node.get("addr").map(str::to_string) else {
            return;
        };
        let Some(this) = wanted
            .iter()
            .find(|w| same(&written, w))
            .copied()
            .cloned()
            .or_else(|| {
                // Another primary steps down when a new one is named.
                let is_primary = node.get("role") == Some("primary");
                (primary.is_some() && is_primary)
                    .then(|| parse_address(&written).ok())
                    .flatten()
            })
        else {
            return;
        };
        seen.push(this.clone());
        if primary.as_ref() == Some(&this) {
            node.put("role", "primary");
            node.remove("fenced");
        } else if let Some((_, why)) = fence.iter().find(|(a, _)| *a == this) {
            node.put("role", "replica");
            node.put("fenced", why);
        } else if demote.contains(&this)
            || (primary.is_some() && node.get("role") == Some("primary"))
        {
            node.put("role", "replica");
        }
        if unfence.contains(&this) {
            node.remove("fenced");
        }
    })?;
    if let Some(missing) = wanted.iter().find(|w| !seen.contains(w)) {
        return Err(EditError::BadRequest(format!(
            "cluster {name:?} has no node {missing}"
        )));
    }
    Ok(doc.to_string())
}

/// One node, written as a `[[…nodes]]` table or an inline table.
enum NodeRef<'a> {
    Table(&'a mut toml_edit::Table),
    Inline(&'a mut InlineTable),
}

impl NodeRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self {
            NodeRef::Table(t) => t.get(key).and_then(Item::as_str),
            NodeRef::Inline(t) => t.get(key).and_then(Value::as_str),
        }
    }

    fn put(&mut self, key: &str, value: &str) {
        match self {
            NodeRef::Table(t) => set_value(*t, key, Value::from(value)),
            NodeRef::Inline(t) => set_inline(t, key, Value::from(value)),
        }
    }

    fn remove(&mut self, key: &str) {
        match self {
            NodeRef::Table(t) => {
                t.remove(key);
            }
            NodeRef::Inline(t) => remove_inline(t, key),
        }
    }
}

/// The `nodes` item of cluster `name`.
fn nodes_mut<'d>(doc: &'d mut DocumentMut, name: &str) -> Result<&'d mut Item, EditError> {
    let unknown = || EditError::UnknownCluster {
        cluster: name.to_string(),
    };
    let clusters = doc
        .get_mut("postgres")
        .and_then(|p| p.as_table_like_mut())
        .and_then(|p| p.get_mut("clusters"))
        .ok_or_else(unknown)?;
    let is_it = |t: &dyn TableLike| t.get("name").and_then(|i| i.as_str()) == Some(name);
    let cluster: &mut dyn TableLike = match clusters {
        Item::ArrayOfTables(list) => list
            .iter_mut()
            .find(|t| is_it(*t))
            .map(|t| t as &mut dyn TableLike),
        Item::Value(Value::Array(list)) => list.iter_mut().find_map(|v| match v {
            Value::InlineTable(t) if is_it(t) => Some(t as &mut dyn TableLike),
            _ => None,
        }),
        _ => None,
    }
    .ok_or_else(unknown)?;
    cluster.get_mut("nodes").ok_or_else(|| EditError::Shape {
        path: format!("postgres.clusters.{name}"),
        message: "the cluster has no nodes".into(),
    })
}

fn for_each_node(
    nodes: &mut Item,
    name: &str,
    f: &mut dyn FnMut(&mut NodeRef<'_>),
) -> Result<(), EditError> {
    let shape = |message: &str| EditError::Shape {
        path: format!("postgres.clusters.{name}.nodes"),
        message: message.to_string(),
    };
    match nodes {
        Item::ArrayOfTables(list) => list.iter_mut().for_each(|t| f(&mut NodeRef::Table(t))),
        Item::Value(Value::Array(list)) => {
            for v in list.iter_mut() {
                let Value::InlineTable(t) = v else {
                    return Err(shape("each node must be a table with addr and role"));
                };
                f(&mut NodeRef::Inline(t));
            }
        }
        _ => return Err(shape("nodes must be a list")),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const INLINE: &str = r#"# ops file
[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:6432"
nodes = [
  { addr = "10.0.0.1:5432", role = "primary" }, # the old one
  { addr = "10.0.0.2:5432", role = "replica", priority = 200 },
  { addr = "10.0.0.3:5432", role = "replica" },
]
users = [{ name = "app", password = "pw" }]
"#;

    const TABLES: &str = r#"[[postgres.clusters]]
name = "other"
listen = "127.0.0.1:6433"
nodes = [{ addr = "10.1.0.1:5432", role = "primary" }]

[[postgres.clusters]]
name = "main"
listen = "127.0.0.1:6432"

[[postgres.clusters.nodes]]
addr = "10.0.0.1:5432"
role = "primary"

[[postgres.clusters.nodes]]
addr = "10.0.0.2:5432"
role = "replica"
"#;

    fn failover<'a>(fence: &'a [(String, String)]) -> NodeRoles<'a> {
        NodeRoles {
            primary: Some("10.0.0.2:5432"),
            fence,
            ..NodeRoles::default()
        }
    }

    #[test]
    fn a_failover_moves_the_primary_and_fences_the_old_one_inline() {
        let fence = [("10.0.0.1:5432".to_string(), "failover at T".to_string())];
        let out = set_node_roles(INLINE, "main", &failover(&fence)).unwrap();
        assert!(out.contains(r#"{ addr = "10.0.0.1:5432", role = "replica", fenced = "failover at T" }, # the old one"#), "{out}");
        assert!(
            out.contains(r#"{ addr = "10.0.0.2:5432", role = "primary", priority = 200 },"#),
            "{out}"
        );
        assert!(
            out.contains(r#"{ addr = "10.0.0.3:5432", role = "replica" },"#),
            "{out}"
        );
        assert!(out.starts_with("# ops file\n"));
        let c = crate::parse(&out).unwrap();
        assert_eq!(
            c.postgres.clusters[0].nodes[0].fenced.as_deref(),
            Some("failover at T")
        );
    }

    #[test]
    fn works_on_node_tables_of_the_right_cluster() {
        let fence = [("10.0.0.1:5432".to_string(), "why".to_string())];
        let out = set_node_roles(TABLES, "main", &failover(&fence)).unwrap();
        let c = crate::parse(&out).unwrap();
        let main = &c.postgres.clusters[1];
        assert_eq!(main.nodes[1].role, crate::NodeRole::Primary);
        assert_eq!(main.nodes[0].role, crate::NodeRole::Replica);
        assert_eq!(
            c.postgres.clusters[0].nodes[0].role,
            crate::NodeRole::Primary
        );
    }

    #[test]
    fn rejoin_removes_the_fence_and_keeps_the_role() {
        let fence = [("10.0.0.1:5432".to_string(), "why".to_string())];
        let fenced = set_node_roles(INLINE, "main", &failover(&fence)).unwrap();
        let unfence = ["10.0.0.1:5432".to_string()];
        let roles = NodeRoles {
            unfence: &unfence,
            ..NodeRoles::default()
        };
        let out = set_node_roles(&fenced, "main", &roles).unwrap();
        assert!(
            out.contains(r#"{ addr = "10.0.0.1:5432", role = "replica" }, # the old one"#),
            "{out}"
        );
    }

    #[test]
    fn unknown_clusters_and_nodes_are_refused() {
        let fence = [];
        let e = set_node_roles(INLINE, "nope", &failover(&fence)).unwrap_err();
        assert!(matches!(e, EditError::UnknownCluster { .. }), "{e}");
        let roles = NodeRoles {
            primary: Some("10.9.9.9:5432"),
            ..NodeRoles::default()
        };
        let e = set_node_roles(INLINE, "main", &roles).unwrap_err();
        assert!(e.to_string().contains("no node 10.9.9.9:5432"), "{e}");
    }
}
