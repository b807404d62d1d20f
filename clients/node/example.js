// Lists models, chats and streams against a running gateway; prints one JSON object per line
// (messages in their proto3 JSON form).
//   SWITCHBOARD_GRPC_TARGET=127.0.0.1:50051 SWITCHBOARD_API_KEY=sb-... node example.js [prompt]

import {
  ChatResponseSchema,
  ModelSchema,
  StreamChatResponseSchema,
  SwitchboardClient,
  SwitchboardError,
  responseText,
  toJson,
} from './index.js';

const MODEL = process.env.SWITCHBOARD_MODEL || 'demo/echo';

/** @param {unknown} object */
function print(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

async function main() {
  const target = process.env.SWITCHBOARD_GRPC_TARGET || '127.0.0.1:50051';
  const apiKey = process.env.SWITCHBOARD_API_KEY;
  if (!apiKey) throw new Error('set SWITCHBOARD_API_KEY to a gateway key');
  const prompt = process.argv[2] || 'Hello from Node';
  const client = new SwitchboardClient(target, apiKey, { timeoutMs: 30_000 });
  try {
    const models = await client.listModels();
    print({ kind: 'models', models: models.map((m) => toJson(ModelSchema, m)) });

    const response = await client.chat({ model: MODEL, messages: [prompt], maxTokens: 64 });
    print({
      kind: 'chat',
      text: responseText(response),
      response: toJson(ChatResponseSchema, response),
    });

    for await (const frame of client.streamChat({ model: MODEL, messages: [prompt] })) {
      print({ kind: 'frame', frame: toJson(StreamChatResponseSchema, frame) });
    }
  } finally {
    client.close();
  }
}

main().catch((err) => {
  print({ kind: 'error', error: err instanceof SwitchboardError ? err.toJSON() : String(err) });
  process.exitCode = 1;
});
