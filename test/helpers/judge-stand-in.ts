// A stand-in for the video QA judge (an OpenAI-compatible chat completions server on 127.0.0.1):
// it records each request's Authorization header and user message and answers with the verdict
// `verdict(user)` gives, in the Python-dict form the Video-ChatGPT judge prompt asks for.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface JudgeStandIn {
  /** base URL, `http://127.0.0.1:PORT/v1` */
  url: string;
  asked: { auth: string | undefined; user: string }[];
  close(): Promise<void>;
}

export async function startJudgeStandIn(verdict: (user: string) => { pred: 'yes' | 'no'; score: number }): Promise<JudgeStandIn> {
  const asked: JudgeStandIn['asked'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const b = JSON.parse(body) as { model: string; messages: { role: string; content: string }[] };
      const user = b.messages[1]!.content;
      asked.push({ auth: req.headers.authorization, user });
      const v = verdict(user);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: b.model, choices: [{ index: 0, message: { role: 'assistant', content: `{'pred': '${v.pred}', 'score': ${v.score}}` }, finish_reason: 'stop' }] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    asked,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
