import { connect as tcp } from "node:net";
import os from "node:os";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { services } from "./system";

export interface MachineFacts {
  cpuModel: string;
  cores: number;
  ramGiB: number;
  os: string;
  node: string;
  postgres: string;
  redis: string;
  nats: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  loadAverageAtStart: number;
}

async function redisVersion(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = tcp(Number(port || 6379), hostname);
    let reply = "";
    socket.on("connect", () => socket.write("INFO server\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      const match = /redis_version:([^\r\n]+)/.exec(reply);
      if (match) {
        socket.end();
        resolve(match[1]!);
      }
    });
    socket.on("error", () => resolve("unknown"));
  });
}

export async function machineFacts(): Promise<MachineFacts> {
  const client = new pg.Client({ connectionString: services.databaseUrl });
  await client.connect();
  const { rows } = await client.query<{ server_version: string }>("SHOW server_version");
  await client.end();
  const nc = await connect({ servers: services.natsUrl, name: "bench-facts" });
  const nats = nc.info?.version ?? "unknown";
  await nc.close();
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? "unknown",
    cores: os.cpus().length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: rows[0]?.server_version ?? "unknown",
    redis: await redisVersion(services.redisUrl),
    nats,
    loadAverageAtStart: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}
