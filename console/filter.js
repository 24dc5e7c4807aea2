// The structured builder's model and its two translations: the filter text it writes, and the
// normalized tree (from ValidateFilter) it reads back. Groups are ORed, a group's rows ANDed, and
// each row and each group may be negated; a filter of any other shape stays text-only.

export const OPERATORS = {
  OPERATOR_EQ: { text: "=", label: "is", values: 1 },
  OPERATOR_NE: { text: "!=", label: "is not", values: 1 },
  OPERATOR_LT: { text: "<", label: "less than", values: 1 },
  OPERATOR_LTE: { text: "<=", label: "at most", values: 1 },
  OPERATOR_GT: { text: ">", label: "greater than", values: 1 },
  OPERATOR_GTE: { text: ">=", label: "at least", values: 1 },
  OPERATOR_IN: { text: "IN", label: "is one of", values: "many" },
  OPERATOR_BETWEEN: { text: "BETWEEN", label: "between", values: 2 },
  OPERATOR_STARTS_WITH: { text: "STARTS WITH", label: "starts with", values: 1 },
  OPERATOR_MATCHES: { text: "MATCHES", label: "matches", values: 1 },
  OPERATOR_EXISTS: { text: "EXISTS", label: "exists", values: 0 },
  // Not an operator of the API: `path >= now-Nd`, read back from that shape.
  LAST_DAYS: { text: ">=", label: "in the last (days)", values: 1 },
};

// The operators offered for a path holding values of `type` (from DescribeFields).
export function operatorsFor(type) {
  switch (type) {
    case "date":
      return ["LAST_DAYS", "OPERATOR_GT", "OPERATOR_GTE", "OPERATOR_LT", "OPERATOR_LTE", "OPERATOR_BETWEEN", "OPERATOR_EQ", "OPERATOR_NE", "OPERATOR_EXISTS"];
    case "integer":
    case "float":
      return ["OPERATOR_EQ", "OPERATOR_NE", "OPERATOR_GT", "OPERATOR_GTE", "OPERATOR_LT", "OPERATOR_LTE", "OPERATOR_BETWEEN", "OPERATOR_IN", "OPERATOR_EXISTS"];
    case "boolean":
      return ["OPERATOR_EQ", "OPERATOR_NE", "OPERATOR_EXISTS"];
    default:
      return ["OPERATOR_EQ", "OPERATOR_NE", "OPERATOR_IN", "OPERATOR_STARTS_WITH", "OPERATOR_MATCHES", "OPERATOR_EXISTS", "OPERATOR_GT", "OPERATOR_LT", "OPERATOR_BETWEEN"];
  }
}

// A proto3-JSON Value as it is written in the filter language.
export function valueText(value) {
  if ("string" in value) return JSON.stringify(value.string);
  if ("integer" in value) return String(value.integer);
  if ("number" in value) return String(value.number);
  if ("boolean" in value) return String(value.boolean);
  if ("null" in value) return "null";
  if ("date" in value) return value.date;
  if ("dateMs" in value) return new Date(Number(value.dateMs)).toISOString();
  return "null";
}

// What a person typed in a value box, as a literal: numbers, booleans, null, dates and relative
// times as they are; a quoted string as it is; anything else becomes a quoted string.
export function literal(typed) {
  const text = typed.trim();
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text)) return text;
  if (/^(true|false|null)$/.test(text)) return text;
  if (/^now([-+]\d+[smhdwMy])?$/.test(text)) return text;
  if (/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[-+]\d{2}:\d{2}))?$/.test(text)) return text;
  if (/^".*"$/.test(text)) {
    try {
      JSON.parse(text);
      return text;
    } catch {
      // not a well-formed string literal: quote it whole
    }
  }
  return JSON.stringify(text);
}

// A value box's text for a literal read from a tree: strings unquoted, the rest as written.
export function typedText(value) {
  return "string" in value ? value.string : valueText(value);
}

function rowText(row) {
  const operator = OPERATORS[row.op];
  const values = row.values.map(literal);
  let text;
  switch (operator.values) {
    case 0:
      text = `${row.path} EXISTS`;
      break;
    case "many":
      text = `${row.path} IN [${values.join(", ")}]`;
      break;
    case 2:
      text = `${row.path} BETWEEN ${values[0] ?? "0"} AND ${values[1] ?? "0"}`;
      break;
    case 1:
      if (row.op === "LAST_DAYS") {
        const days = Math.max(0, Number.parseInt(row.values[0], 10) || 0);
        text = `${row.path} >= now-${days}d`;
        break;
      }
    // falls through
    default:
      text = `${row.path} ${operator.text} ${values[0] ?? '""'}`;
  }
  return row.not ? `NOT (${text})` : text;
}

// The builder's model as filter text ("" = every user).
export function modelText(model) {
  const groups = model.groups
    .map((group) => ({ rows: group.rows.filter((row) => row.path.trim()), not: Boolean(group.not) }))
    .filter((group) => group.rows.length);
  const texts = groups.map(({ rows, not }) => {
    const text = rows.map(rowText).join(" AND ");
    if (not) return `NOT (${text})`;
    return groups.length > 1 && rows.length > 1 ? `(${text})` : text;
  });
  return texts.join(" OR ");
}

function rowOf(node) {
  let not = false;
  if (node.negate) {
    not = true;
    node = node.negate;
  }
  const predicate = node.predicate;
  if (!predicate) return null;
  const raw = predicate.values || [];
  const lastDays = predicate.op === "OPERATOR_GTE" && raw.length === 1 && /^now-(\d+)d$/.exec(raw[0].date || "");
  if (lastDays) return { path: predicate.path, op: "LAST_DAYS", values: [lastDays[1]], not };
  return { path: predicate.path, op: predicate.op || "OPERATOR_EQ", values: raw.map(typedText), not };
}

function groupOf(node) {
  // NOT over several rows negates the group; NOT over one row stays on the row.
  const not = Boolean(node.negate?.all);
  const inner = not ? node.negate : node;
  const children = inner.all ? inner.all.filters || [] : [inner];
  const rows = children.map(rowOf);
  return rows.every(Boolean) ? { rows, not } : null;
}

// The builder's model of a normalized tree, or null when the builder cannot show it.
export function modelOf(tree) {
  if (!tree || Object.keys(tree).length === 0) return { groups: [{ rows: [] }] };
  const children = tree.any ? tree.any.filters || [] : [tree];
  const groups = children.map(groupOf);
  return groups.every(Boolean) ? { groups } : null;
}
