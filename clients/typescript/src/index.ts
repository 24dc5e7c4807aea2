// clerk-index client for Node: filter, count, facet, export and watch Clerk users by any attribute.

export * from "./checkpoint.js";
export * from "./client.js";
export * from "./errors.js";
export * from "./filters.js";
export * as pb from "./gen/clerkindex/v1/user_index_pb.js";
export * as segmentsPb from "./gen/clerkindex/v1/segments_pb.js";
export * as syncPb from "./gen/clerkindex/v1/sync_pb.js";
