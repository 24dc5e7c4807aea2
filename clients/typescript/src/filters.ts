// Build filters in code instead of formatting filter text:
//
//   field("public.plan_type").eq("pro").and(field("created_at").gt(date("now-30d")))
//
// A built filter is the structured form of the filter language (`Filter` in the protos), so no
// value ever needs quoting. Strings passed to count, search and the others are filter text.

import { create } from "@bufbuild/protobuf";
import {
  type Filter as FilterProto,
  type FilterSpec,
  FilterSchema,
  FilterSpecSchema,
  Operator,
  type Value,
  ValueSchema,
} from "./gen/clerkindex/v1/user_index_pb.js";

/** A date as text: relative (`now-30d`), `YYYY-MM-DD` or RFC 3339. A plain string is a string. */
export class DateText {
  constructor(readonly text: string) {}
}

export function date(text: string): DateText {
  return new DateText(text);
}

/** A value in a filter: JSON scalars, a Date (an instant), or date("now-30d"). */
export type FilterValue = string | number | bigint | boolean | null | Date | DateText;

function value(v: FilterValue): Value {
  if (v === null) return create(ValueSchema, { kind: { case: "null", value: true } });
  if (typeof v === "boolean") return create(ValueSchema, { kind: { case: "boolean", value: v } });
  if (typeof v === "bigint") return create(ValueSchema, { kind: { case: "integer", value: v } });
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new RangeError(`a filter number is finite, not ${v}`);
    return Number.isSafeInteger(v)
      ? create(ValueSchema, { kind: { case: "integer", value: BigInt(v) } })
      : create(ValueSchema, { kind: { case: "number", value: v } });
  }
  if (typeof v === "string") return create(ValueSchema, { kind: { case: "string", value: v } });
  if (v instanceof DateText) return create(ValueSchema, { kind: { case: "date", value: v.text } });
  if (v instanceof Date) {
    return create(ValueSchema, { kind: { case: "dateMs", value: BigInt(v.getTime()) } });
  }
  throw new TypeError(`not a filter value: ${String(v)}`);
}

/** A filter tree; combine with and(), or(), not(). */
export class Filter {
  constructor(readonly proto: FilterProto) {}

  and(...others: Filter[]): Filter {
    return allOf(this, ...others);
  }

  or(...others: Filter[]): Filter {
    return anyOf(this, ...others);
  }

  not(): Filter {
    return not(this);
  }
}

function flatten(kind: "all" | "any", filters: Filter[]): FilterProto[] {
  return filters.flatMap((f) =>
    f.proto.node.case === kind ? f.proto.node.value.filters : [f.proto],
  );
}

/** AND of the filters. */
export function allOf(...filters: Filter[]): Filter {
  return new Filter(
    create(FilterSchema, { node: { case: "all", value: { filters: flatten("all", filters) } } }),
  );
}

/** OR of the filters. */
export function anyOf(...filters: Filter[]): Filter {
  return new Filter(
    create(FilterSchema, { node: { case: "any", value: { filters: flatten("any", filters) } } }),
  );
}

/** NOT of the filter (the proto field is `negate`). */
export function not(filter: Filter): Filter {
  return new Filter(create(FilterSchema, { node: { case: "negate", value: filter.proto } }));
}

/**
 * `org[...]`: one and the same organization membership satisfies `filter`, whose paths are a
 * membership's (`field("role").eq("org:admin")`, `field("public.plan")`).
 */
export function org(filter: Filter): Filter {
  return new Filter(create(FilterSchema, { node: { case: "org", value: filter.proto } }));
}

/** `IN SEGMENT "name"`: the user is in that saved segment (its filter in place of this). */
export function inSegment(name: string): Filter {
  return new Filter(create(FilterSchema, { node: { case: "segment", value: name } }));
}

/** A core field (`email`, `created_at`) or a metadata path (`public.prefs.theme`). */
export class Path {
  constructor(readonly path: string) {
    if (!path) throw new RangeError("a path is not empty");
  }

  private predicate(op: Operator, values: FilterValue[]): Filter {
    return new Filter(
      create(FilterSchema, {
        node: { case: "predicate", value: { path: this.path, op, values: values.map(value) } },
      }),
    );
  }

  eq(v: FilterValue): Filter {
    return this.predicate(Operator.EQ, [v]);
  }
  ne(v: FilterValue): Filter {
    return this.predicate(Operator.NE, [v]);
  }
  lt(v: FilterValue): Filter {
    return this.predicate(Operator.LT, [v]);
  }
  lte(v: FilterValue): Filter {
    return this.predicate(Operator.LTE, [v]);
  }
  gt(v: FilterValue): Filter {
    return this.predicate(Operator.GT, [v]);
  }
  gte(v: FilterValue): Filter {
    return this.predicate(Operator.GTE, [v]);
  }
  in(values: FilterValue[]): Filter {
    return this.predicate(Operator.IN, values);
  }
  /** low <= value <= high */
  between(low: FilterValue, high: FilterValue): Filter {
    return this.predicate(Operator.BETWEEN, [low, high]);
  }
  exists(): Filter {
    return this.predicate(Operator.EXISTS, []);
  }
  startsWith(prefix: string): Filter {
    return this.predicate(Operator.STARTS_WITH, [prefix]);
  }
  /** Full-text match on a text field (names, emails). */
  matches(text: string): Filter {
    return this.predicate(Operator.MATCHES, [text]);
  }
}

export function field(path: string): Path {
  return new Path(path);
}

/** Filter text, a built filter, or undefined for every user. */
export type FilterLike = string | Filter | undefined;

export function toSpec(filter: FilterLike): FilterSpec | undefined {
  if (filter === undefined) return undefined;
  if (typeof filter === "string") {
    return create(FilterSpecSchema, { spec: { case: "expression", value: filter } });
  }
  return create(FilterSpecSchema, { spec: { case: "tree", value: filter.proto } });
}
