// Where a watch keeps the sequence of the last event it handled, so a restarted program resumes
// after it instead of missing events or starting over.

import { mkdtemp, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";

export interface Checkpoint {
  /** The last handled sequence, or undefined before the first event. */
  load(): Promise<bigint | undefined>;
  /** Record that every event up to `sequence` was handled. */
  save(sequence: bigint): Promise<void>;
}

export class MemoryCheckpoint implements Checkpoint {
  constructor(public sequence?: bigint) {}
  async load(): Promise<bigint | undefined> {
    return this.sequence;
  }
  async save(sequence: bigint): Promise<void> {
    this.sequence = sequence;
  }
}

/** A checkpoint in a small text file, replaced atomically (write, fsync, rename). */
export class FileCheckpoint implements Checkpoint {
  constructor(readonly path: string) {}

  async load(): Promise<bigint | undefined> {
    let text: string;
    try {
      text = (await readFile(this.path, "ascii")).trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    if (!/^\d+$/.test(text)) {
      throw new Error(`${this.path} does not hold a sequence number: ${JSON.stringify(text.slice(0, 40))}`);
    }
    return BigInt(text);
  }

  async save(sequence: bigint): Promise<void> {
    const scratch = await mkdtemp(join(dirname(this.path), ".checkpoint-"));
    const tmp = join(scratch, "seq");
    try {
      const file = await open(tmp, "w");
      try {
        await file.writeFile(`${sequence}\n`, "ascii");
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, this.path);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
}
