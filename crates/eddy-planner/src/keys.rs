//! Keys of a plan's result: sets of columns that no two of its rows share
//! values in, whatever the input. A result with a key holds each row at
//! most once, so a change of a row sets its count to 1 or 0 (which a durable
//! engine stores as such instead of adding up deltas); an empty key means
//! at most one row.
//!
//! Found from the plan's shape alone (groups, DISTINCT, primary keys the
//! caller names, joins on a key of one side); where the shape does not
//! show one, there is none.

use datafusion::common::DFSchema;
use datafusion::logical_expr::logical_plan::FetchType;
use datafusion::logical_expr::{Distinct, Expr, Join, JoinType, LogicalPlan};

/// A key of a relation a plan reads (by name), as positions in its full
/// schema, if it has one.
pub type RelationKey<'a> = dyn Fn(&str) -> Option<Vec<usize>> + 'a;

/// True if no two rows of `plan`'s result are equal, whatever its input;
/// `relation_key` gives the keys of the relations it reads.
pub fn distinct_rows(plan: &LogicalPlan, relation_key: &RelationKey<'_>) -> bool {
    !keys(plan, relation_key).is_empty()
}

/// The key to store `plan`'s result by: its shortest key (fewest columns,
/// the first of those in the order found), or `None` where the shape shows
/// none, or shows at most one row (nothing to look up by then).
pub fn storage_key(plan: &LogicalPlan, relation_key: &RelationKey<'_>) -> Option<Vec<usize>> {
    let keys = keys(plan, relation_key);
    if keys.iter().any(Vec::is_empty) {
        return None;
    }
    keys.into_iter().min_by_key(Vec::len)
}

/// True when `plan` returns at most one row whatever its input.
pub(crate) fn at_most_one_row(plan: &LogicalPlan) -> bool {
    keys(plan, &|_| None).iter().any(Vec::is_empty)
}

/// The keys of `plan`'s result that its shape shows, as output positions.
fn keys(plan: &LogicalPlan, relation_key: &RelationKey<'_>) -> Vec<Vec<usize>> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let key: Vec<Vec<usize>> = relation_key(scan.table_name.table()).into_iter().collect();
            let keys = match &scan.projection {
                None => key,
                Some(columns) => project(&key, |i| columns.iter().position(|c| *c == i)),
            };
            with_fetch(keys, scan.fetch)
        }
        LogicalPlan::Projection(projection) => {
            let input = projection.input.schema();
            project(&keys(&projection.input, relation_key), |i| {
                projection
                    .expr
                    .iter()
                    .position(|e| column_index(e, input) == Some(i))
            })
        }
        LogicalPlan::Filter(filter) => keys(&filter.input, relation_key),
        LogicalPlan::SubqueryAlias(alias) => keys(&alias.input, relation_key),
        LogicalPlan::Sort(sort) => with_fetch(keys(&sort.input, relation_key), sort.fetch),
        LogicalPlan::Limit(limit) => {
            let fetch = match limit.get_fetch_type() {
                Ok(FetchType::Literal(fetch)) => fetch,
                _ => None,
            };
            with_fetch(keys(&limit.input, relation_key), fetch)
        }
        // Grouping sets repeat a group's columns in several rows.
        LogicalPlan::Aggregate(aggregate)
            if !aggregate
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_))) =>
        {
            vec![(0..aggregate.group_expr.len()).collect()]
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            vec![(0..input.schema().fields().len()).collect()]
        }
        LogicalPlan::Join(join) => join_keys(join, relation_key),
        LogicalPlan::EmptyRelation(_) => vec![vec![]],
        LogicalPlan::Values(values) if values.values.len() <= 1 => vec![vec![]],
        _ => Vec::new(),
    }
}

/// A join's keys: a row of one side meets at most one row of the other
/// when the other side's join columns hold a key of it, and then the
/// first side's keys stay keys (outer rows of that side too, padded).
fn join_keys(join: &Join, relation_key: &RelationKey<'_>) -> Vec<Vec<usize>> {
    let left = keys(&join.left, relation_key);
    let right = keys(&join.right, relation_key);
    match join.join_type {
        // Some of one side's rows, as they are.
        JoinType::LeftSemi | JoinType::LeftAnti => return left,
        JoinType::RightSemi | JoinType::RightAnti => return right,
        _ => {}
    }
    let joined_on = |side: &LogicalPlan, exprs: Vec<&Expr>| -> Vec<usize> {
        exprs
            .into_iter()
            .filter_map(|e| column_index(e, side.schema()))
            .collect()
    };
    let left_on = joined_on(&join.left, join.on.iter().map(|(l, _)| l).collect());
    let right_on = joined_on(&join.right, join.on.iter().map(|(_, r)| r).collect());
    let covered = |keys: &[Vec<usize>], on: &[usize]| {
        keys.iter().any(|key| key.iter().all(|c| on.contains(c)))
    };
    let mut found = Vec::new();
    if matches!(join.join_type, JoinType::Inner | JoinType::Left) && covered(&right, &right_on) {
        found.extend(left.iter().cloned());
    }
    if matches!(join.join_type, JoinType::Inner | JoinType::Right) && covered(&left, &left_on) {
        let width = join.left.schema().fields().len();
        found.extend(
            right
                .iter()
                .map(|key| key.iter().map(|c| c + width).collect()),
        );
    }
    found
}

/// `keys` of an input, as positions of the output that `position` maps
/// input columns to; a key with a column the output lacks is lost.
fn project(keys: &[Vec<usize>], position: impl Fn(usize) -> Option<usize>) -> Vec<Vec<usize>> {
    keys.iter()
        .filter_map(|key| key.iter().map(|c| position(*c)).collect())
        .collect()
}

/// `keys` of a result cut to `fetch` rows: at most one row is a key too.
fn with_fetch(mut keys: Vec<Vec<usize>>, fetch: Option<usize>) -> Vec<Vec<usize>> {
    if fetch.is_some_and(|f| f <= 1) {
        keys.push(Vec::new());
    }
    keys
}

/// The position in `schema` of the column `expr` passes on unchanged.
fn column_index(expr: &Expr, schema: &DFSchema) -> Option<usize> {
    match expr {
        Expr::Column(column) => schema.maybe_index_of_column(column),
        Expr::Alias(alias) => column_index(&alias.expr, schema),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// The optimized plan of `sql` over `t(k, v, w)` (key `k`, as the
    /// caller says), `u(k, x)` (key `k`) and `n(a, b)` (no key).
    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        let table = |names: &[&str]| {
            let fields: Vec<Field> = names
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, true))
                .collect();
            Arc::new(MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).unwrap())
        };
        ctx.register_table("t", table(&["k", "v", "w"])).unwrap();
        ctx.register_table("u", table(&["k", "x"])).unwrap();
        ctx.register_table("n", table(&["a", "b"])).unwrap();
        ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap()
    }

    fn relation_key(name: &str) -> Option<Vec<usize>> {
        match name {
            "t" | "u" => Some(vec![0]),
            _ => None,
        }
    }

    async fn distinct(sql: &str) -> bool {
        distinct_rows(&plan(sql).await, &relation_key)
    }

    #[tokio::test]
    async fn groups_distinct_and_primary_keys_make_rows_distinct() {
        for sql in [
            "SELECT a, count(*) FROM n GROUP BY a",
            "SELECT count(*), a + 1 AS a1, a FROM n GROUP BY a",
            "SELECT sum(b) FROM n",
            "SELECT DISTINCT a FROM n",
            "SELECT a, b FROM n ORDER BY a LIMIT 1",
            "SELECT * FROM t",
            "SELECT v, k AS key FROM t WHERE v > 3",
            "SELECT * FROM (SELECT a, max(b) AS m FROM n GROUP BY a) g WHERE m > 1",
        ] {
            assert!(distinct(sql).await, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_result_without_a_key_may_repeat_rows() {
        for sql in [
            "SELECT a FROM n",
            "SELECT v, w FROM t",
            "SELECT count(*) FROM n GROUP BY a",
            "SELECT a FROM n ORDER BY a LIMIT 2",
            "SELECT k FROM t UNION ALL SELECT k FROM u",
            "SELECT a, count(*) FROM n GROUP BY ROLLUP (a)",
            "SELECT k + 1 AS k FROM t",
        ] {
            assert!(!distinct(sql).await, "{sql}");
        }
    }

    #[tokio::test]
    async fn the_storage_key_is_the_shortest_key() {
        for (sql, want) in [
            (
                "SELECT a, b, count(*) FROM n GROUP BY a, b",
                Some(vec![0, 1]),
            ),
            ("SELECT count(*), a FROM n GROUP BY a", Some(vec![1])),
            ("SELECT v, k AS key FROM t WHERE v > 3", Some(vec![1])),
            (
                "SELECT u.x, t.v, t.k FROM t JOIN u ON t.v = u.k",
                Some(vec![2]),
            ),
            ("SELECT sum(b) FROM n", None),
            ("SELECT a FROM n", None),
        ] {
            let plan = plan(sql).await;
            assert_eq!(
                storage_key(&plan, &relation_key),
                want,
                "{sql}\n{}",
                plan.display_indent()
            );
        }
    }

    #[tokio::test]
    async fn a_join_on_a_key_of_one_side_keeps_the_other_sides_keys() {
        for sql in [
            // Each row of t meets at most one row of u.
            "SELECT t.k, t.v, u.x FROM t JOIN u ON t.v = u.k",
            "SELECT t.k, u.x FROM t LEFT JOIN u ON t.v = u.k",
            "SELECT t.k, u.k FROM t JOIN u ON t.k = u.k",
            "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM n WHERE n.a = t.v)",
            "SELECT * FROM t WHERE t.v NOT IN (SELECT a FROM n)",
            "SELECT t.k, s.total FROM t CROSS JOIN (SELECT sum(a) AS total FROM n) s",
        ] {
            let plan = plan(sql).await;
            let found = keys(&plan, &relation_key);
            assert!(!found.is_empty(), "{sql}\n{}", plan.display_indent());
        }
        for sql in [
            // A row of t may meet many rows of n, and the other way round.
            "SELECT t.k, n.b FROM t JOIN n ON t.v = n.a",
            "SELECT t.k, u.x FROM t FULL JOIN u ON t.v = u.k",
            "SELECT u.x FROM t JOIN u ON t.v = u.k",
            "SELECT t.k FROM t CROSS JOIN u",
        ] {
            let plan = plan(sql).await;
            assert!(
                keys(&plan, &relation_key).is_empty(),
                "{sql}\n{}",
                plan.display_indent()
            );
        }
    }
}
