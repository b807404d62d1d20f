'use strict';
// Runs failing calls and prints, per case, the error the client raised as one JSON line.
//   SWITCHBOARD_GRPC_TARGET=... node test/errors.js '[{"name": "x", "key": "sb-...",
//     "request": {"model": "nope/x", "messages": ["hi"]}, "stream": false}]'
// Used by tests/e2e/test_node_client.py; the assertions live there.

const { SwitchboardClient, SwitchboardError } = require('../index.js');

async function run(target, testCase) {
  const client = new SwitchboardClient(target, testCase.key, { timeoutMs: 30_000 });
  try {
    if (testCase.stream) {
      const frames = [];
      for await (const frame of client.streamChat(testCase.request)) frames.push(frame);
      return { case: testCase.name, error: null, frames };
    }
    const response = await client.chat(testCase.request);
    return { case: testCase.name, error: null, response };
  } catch (err) {
    return {
      case: testCase.name,
      thrown: err.constructor.name,
      isSwitchboardError: err instanceof SwitchboardError,
      error: err instanceof SwitchboardError ? err.toJSON() : { message: err.message },
    };
  } finally {
    client.close();
  }
}

async function main() {
  const target = process.env.SWITCHBOARD_GRPC_TARGET;
  if (!target) throw new Error('set SWITCHBOARD_GRPC_TARGET');
  for (const testCase of JSON.parse(process.argv[2])) {
    process.stdout.write(JSON.stringify(await run(target, testCase)) + '\n');
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exitCode = 1;
});
