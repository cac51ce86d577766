/** The way tests, the demo and the bench drive a running fake Meta: its `/_fake` control API, with the token. */
export type FakeMetaControl = (path: string, body?: unknown, method?: string) => Promise<Response>;

/** `control("/pages", {...})` POSTs JSON, `control("/calls?pageId=1")` GETs; `method` overrides either. */
export function fakeMetaControl(url: string, controlToken: string): FakeMetaControl {
  return (path, body, method) =>
    fetch(`${url}/_fake${path}`, {
      method: method ?? (body === undefined ? "GET" : "POST"),
      headers: {
        authorization: `Bearer ${controlToken}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
}
