import express from "express";

/**
 * The baseline the ingress is measured against: Express 5 on the same machine, reading the same
 * bodies, answering 200 — everything an HTTP endpoint must do, nothing the ingress adds.
 */
const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.post("/webhooks/facebook", express.raw({ type: () => true, limit: "5mb" }), (req, res) => {
  res.status(200).json({ status: "ok", bytes: (req.body as Buffer).length });
});
app.get("/readyz", (_req, res) => {
  res.json({ status: "ready" });
});
const server = app.listen(Number(process.env.PORT), "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
