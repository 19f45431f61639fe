// Counters for GET /metrics in Prometheus' text format.

export class Metrics {
  private readonly requests = new Map<string, number>();
  promptTokens = 0;
  cachedTokens = 0;
  generatedTokens = 0;
  prefillSeconds = 0;
  decodeSeconds = 0;
  encodeSeconds = 0;

  request(route: string, status: number): void {
    const k = `route="${route}",status="${status}"`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  text(g: { queue: number; inFlight: number; ready: boolean }): string {
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`${name}${labels ? `{${labels}}` : ''} ${v}`);
    };
    metric('mgllava_requests_total', 'counter', 'HTTP requests by route and status.', [...this.requests].sort(([a], [b]) => a.localeCompare(b)));
    metric('mgllava_queue_length', 'gauge', 'Chat requests waiting for the model.', [['', g.queue]]);
    metric('mgllava_requests_in_flight', 'gauge', 'Chat requests waiting or running.', [['', g.inFlight]]);
    metric('mgllava_model_ready', 'gauge', '1 once the model is loaded.', [['', g.ready ? 1 : 0]]);
    metric('mgllava_prompt_tokens_total', 'counter', 'Prompt positions (text and visual tokens) of answered requests.', [['', this.promptTokens]]);
    metric('mgllava_prompt_tokens_cached_total', 'counter', 'Prompt positions reused from the prompt cache.', [['', this.cachedTokens]]);
    metric('mgllava_generated_tokens_total', 'counter', 'Tokens generated.', [['', this.generatedTokens]]);
    metric('mgllava_encode_seconds_total', 'counter', 'Time decoding, detecting and encoding images.', [['', this.encodeSeconds]]);
    metric('mgllava_prefill_seconds_total', 'counter', 'Time in prompt prefill.', [['', this.prefillSeconds]]);
    metric('mgllava_decode_seconds_total', 'counter', 'Time generating tokens after the first.', [['', this.decodeSeconds]]);
    return lines.join('\n') + '\n';
  }
}
