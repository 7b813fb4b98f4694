package telemetry

import "go.opentelemetry.io/otel/attribute"

// Attribute names. The gen_ai.* ones follow the OpenTelemetry semantic
// conventions for generative AI; the sluice.* ones describe a routing
// decision. None ever holds a secret or message content.
const (
	GenAIOperation     = attribute.Key("gen_ai.operation.name")     // chat, embeddings
	GenAISystem        = attribute.Key("gen_ai.system")             // openai, azure.ai.openai, ...
	GenAIProvider      = attribute.Key("gen_ai.provider.name")      // the newer name of gen_ai.system
	GenAIRequestModel  = attribute.Key("gen_ai.request.model")      // the model as the client asked
	GenAIResponseModel = attribute.Key("gen_ai.response.model")     // the model the upstream reports
	GenAIResponseID    = attribute.Key("gen_ai.response.id")        // the upstream's completion id
	GenAIMaxTokens     = attribute.Key("gen_ai.request.max_tokens") //
	GenAIFinishReasons = attribute.Key("gen_ai.response.finish_reasons")
	GenAIInputTokens   = attribute.Key("gen_ai.usage.input_tokens")
	GenAIOutputTokens  = attribute.Key("gen_ai.usage.output_tokens")
	GenAITokenType     = attribute.Key("gen_ai.token.type") // input, output (metrics)
	GenAIPrompt        = attribute.Key("gen_ai.prompt")     // only with capture_content
	GenAICompletion    = attribute.Key("gen_ai.completion") // only with capture_content
	ErrorType          = attribute.Key("error.type")
	HTTPStatus         = attribute.Key("http.response.status_code")
	HTTPMethod         = attribute.Key("http.request.method")
	HTTPRoute          = attribute.Key("http.route")
	ServerAddress      = attribute.Key("server.address")
	Credential         = attribute.Key("sluice.credential.id") // a credential's ID, never its key
	Channel            = attribute.Key("sluice.channel")
	Client             = attribute.Key("sluice.client")          // the client key's name
	Candidates         = attribute.Key("sluice.candidates")      // how many credentials could serve
	Attempt            = attribute.Key("sluice.attempt")         // 1 for the first upstream attempt
	Attempts           = attribute.Key("sluice.attempts")        // attempts a request made
	CostUSD            = attribute.Key("sluice.cost_usd")        // what the call cost, in dollars
	FallbackFrom       = attribute.Key("sluice.fallback.from")   // the model a request asked for, when another answered
	FallbackTo         = attribute.Key("sluice.fallback.to")     // the model it went on with
	FallbackReason     = attribute.Key("sluice.fallback.reason") // why
	QuotaResult        = attribute.Key("sluice.quota.result")    // granted, or the refusal's reason
	QuotaScope         = attribute.Key("sluice.quota.scope")     // client, credential
	QuotaMode          = attribute.Key("sluice.quota.mode")      // the fallback policy deciding, if any
	BreakerState       = attribute.Key("sluice.breaker.state")   // closed, half-open, open
	AffinityHit        = attribute.Key("sluice.affinity.hit")    // the sticky mapping chose the credential
	Stream             = attribute.Key("sluice.stream")
	Outcome            = attribute.Key("sluice.outcome")        // ok, failover, error, interrupted
	AttemptResult      = attribute.Key("sluice.attempt.result") // what happened: answered, rate limited, timed out, ... (the outcome table's row)
	Endpoint           = attribute.Key("sluice.endpoint")
	Ingress            = attribute.Key("sluice.ingress") // the client's API: openai, anthropic, responses
	RetryReason        = attribute.Key("sluice.retry.reason")
	QuotaPolicy        = attribute.Key("sluice.quota.policy")
)
