//! `clerk-index demo`: the real service against an embedded fake Clerk serving a generated
//! population, so anyone can try it with one command; and `clerk-index fake-clerk` alone.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;

use super::args::{IndexArgs, parse_addr};
use super::signal::shutdown_signal;
use crate::app;
use crate::clerk::fake::{FakeClerk, FakeClerkConfig, FaultInjection, Population, WebhookTarget};
use crate::clerk::rate_limit::RateLimit;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Users in the generated population.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Seed of the generated population (same seed, same users).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Address of the gRPC API.
    #[arg(long, env = "CLERK_INDEX_GRPC_ADDR", default_value = "127.0.0.1:50051", value_parser = parse_addr)]
    pub grpc_addr: SocketAddr,
    /// Address of the HTTP port: webhooks, /livez, /readyz, /metrics.
    #[arg(long, env = "CLERK_INDEX_HTTP_ADDR", default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub http_addr: SocketAddr,
    /// Where the embedded fake Clerk listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_addr)]
    pub fake_clerk_addr: SocketAddr,
    /// Milliseconds between simulated changes made through the fake Clerk's API (each arrives
    /// as a signed webhook); 0 turns the simulation off.
    #[arg(long, default_value_t = 2000)]
    pub activity_every_ms: u64,
    /// Also generate organizations and memberships (one organization per ten users); the
    /// simulated activity then promotes and demotes members and changes organizations' plans.
    #[arg(long)]
    pub organizations: bool,
    #[command(flatten)]
    pub index: IndexArgs,
}

#[derive(Debug, clap::Args)]
pub struct FakeClerkArgs {
    /// Users in the generated population.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Seed of the generated population (same seed, same users).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Address the fake Clerk Backend API listens on.
    #[arg(long, default_value = "127.0.0.1:8081", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// The secret key clients must send as `Authorization: Bearer <key>`.
    #[arg(long, default_value = "sk_test_fake_clerk")]
    pub secret_key: String,
    /// Answer every Nth request with 429 and Retry-After.
    #[arg(long)]
    pub throttle_every: Option<u64>,
    /// Answer every Nth request with 500.
    #[arg(long)]
    pub server_error_every: Option<u64>,
    /// Enforce a real per-instance rate limit, e.g. 1000/10s (Clerk production).
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Milliseconds every request takes, like a round trip to Clerk (~100-200 ms).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// What GET /v1/instance says the instance is (`development` makes a client left on
    /// `--clerk-rate-limit auto` keep to 90 requests / 10 s).
    #[arg(long, default_value = "production", value_parser = ["production", "development", "staging"])]
    pub environment: String,
    /// Also serve organizations and memberships (one organization per ten users, most small,
    /// a few large), as Clerk's /v1/organizations and /v1/organization_memberships do.
    #[arg(long)]
    pub organizations: bool,
}

/// `clerk-index generate`: the population the fake Clerk serves, as Clerk JSON lines.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Users to generate.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Seed of the generated population (same seed, same users as `demo --seed`).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output file; `-` is standard output.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
    /// Also write the population's organizations and memberships (as `fake-clerk
    /// --organizations` serves them) to `<output>.organizations.jsonl` and
    /// `<output>.memberships.jsonl` (needs a file for --output).
    #[arg(long)]
    pub organizations: bool,
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    use std::io::Write;
    if args.organizations && args.output.as_os_str() == "-" {
        anyhow::bail!("--organizations writes files next to --output: give it a file");
    }
    let population = population(args.users, args.seed);
    let out: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(&args.output)?)
    };
    let mut out = std::io::BufWriter::new(out);
    for i in 0..args.users {
        serde_json::to_writer(&mut out, &population.user(i))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if args.organizations {
        let path = |kind: &str| {
            let mut name = args.output.clone().into_os_string();
            name.push(format!(".{kind}.jsonl"));
            PathBuf::from(name)
        };
        let file = |kind| -> anyhow::Result<_> {
            Ok(std::io::BufWriter::new(std::fs::File::create(path(kind))?))
        };
        let (mut organizations, mut memberships) = (file("organizations")?, file("memberships")?);
        let mut generated = population;
        generated.organizations = true;
        FakeClerk::new(FakeClerkConfig::new(generated))
            .write_organizations(&mut organizations, &mut memberships)?;
        organizations.flush()?;
        memberships.flush()?;
    }
    Ok(())
}

fn population(users: usize, seed: u64) -> Population {
    Population {
        seed,
        ..Population::new(users)
    }
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let telemetry =
        crate::telemetry::init(args.index.log_format, args.index.otlp_endpoint.as_deref());
    let result = run_demo(args).await;
    telemetry.stop().await;
    result
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut generated = population(args.users, args.seed);
    generated.organizations = args.organizations;
    let fake = FakeClerk::new(FakeClerkConfig::new(generated));
    tracing::info!(
        users = args.users,
        took_ms = started.elapsed().as_millis() as u64,
        "generated the demo population"
    );
    let fake_listener = TcpListener::bind(args.fake_clerk_addr).await?;
    let fake_url = format!("http://{}", fake_listener.local_addr()?);
    let fake_shutdown = tokio_util::sync::CancellationToken::new();
    let fake_task = tokio::spawn(
        fake.clone()
            .serve(fake_listener, fake_shutdown.clone().cancelled_owned()),
    );

    let temp_dir;
    let default_dir = match &args.index.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp_dir = tempfile_dir()?;
            temp_dir.clone()
        }
    };
    let webhook_secret = format!(
        "whsec_{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            rand::random::<[u8; 24]>()
        )
    );
    let config = args
        .index
        .builder(default_dir.clone(), &fake_url, "sk_test_fake_clerk")
        .settings(|s| {
            s.webhook_secrets = vec![webhook_secret.clone()];
            // The demo serves generated users to anyone on this machine (run warns about it).
            s.auth = crate::auth::AuthConfig::unauthenticated();
        })
        .build()?;
    let listeners = super::serve::bind(args.grpc_addr, args.http_addr).await?;
    let grpc = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    fake.set_webhook_target(WebhookTarget::new(
        format!("http://{http_addr}/webhooks/clerk"),
        webhook_secret.clone(),
    ))?;
    let activity = tokio::spawn(simulate_activity(
        fake.clone(),
        fake_url.clone(),
        args.activity_every_ms,
    ));
    eprintln!(
        "\nclerk-index demo: {users} generated users behind an embedded fake Clerk at {fake_url}\n\
         index: {dir}\n\
         gRPC: {grpc} (UNAUTHENTICATED: demo only)   HTTP probes: http://{http}/readyz\n\
         webhooks: POST http://{http}/webhooks/clerk, signing secret {webhook_secret}\n\
         console: open http://{http}/ in a browser (sign in with an empty key: demo only)\n\n\
         try, in another terminal:\n  \
         clerk-index count --server http://{grpc} --filter 'public.membership_tier = \"gold\" AND public.plan_type IN [\"pro\", \"team\"]'\n  \
         clerk-index search --server http://{grpc} --filter 'public.favorite_genre = \"sci-fi\"' --sort -public.points --limit 5 --fields public.points,public.favorite_genre\n  \
         grpcurl -plaintext -d '{{\"filter\":{{\"expression\":\"public.user_preferences.theme = \\\"dark\\\"\"}}}}' {grpc} clerkindex.v1.UserIndex/CountUsers\n  \
         clerk-index export --server http://{grpc} --filter 'public.plan_type = \"enterprise\"' --format csv --fields id,email,public.membership_tier -o enterprise.csv\n  \
         grpcurl -plaintext -d '{{\"name\":\"platinum\",\"filter\":{{\"expression\":\"public.membership_tier = \\\"platinum\\\"\"}}}}' {grpc} clerkindex.v1.Segments/CreateSegment\n  \
         grpcurl -plaintext -d '{{\"name\":\"platinum\"}}' {grpc} clerkindex.v1.Segments/WatchSegment   # events as the simulated activity moves users\n",
        users = args.users,
        dir = default_dir.display(),
        http = listeners.http.local_addr()?,
    );
    let result = app::run(config, listeners, shutdown_signal()).await;
    activity.abort();
    fake_shutdown.cancel();
    let _ = fake_task.await;
    if args.index.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&default_dir);
    }
    result
}

/// A fresh directory for a demo index, removed when the demo stops.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("clerk-index-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub async fn fake_clerk(args: FakeClerkArgs) -> anyhow::Result<()> {
    let _telemetry = crate::telemetry::init(crate::telemetry::LogFormat::Pretty, None);
    let mut population = population(args.users, args.seed);
    population.organizations = args.organizations;
    let mut config = FakeClerkConfig::new(population);
    config.secret_key = args.secret_key.clone();
    config.environment_type = args.environment.clone();
    config.faults = FaultInjection {
        throttle_every: args.throttle_every,
        server_error_every: args.server_error_every,
        retry_after_secs: 1,
        latency_ms: args.latency_ms,
        ..FaultInjection::default()
    };
    config.rate_limit = args
        .rate_limit
        .as_deref()
        .map(RateLimit::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--rate-limit: {e}"))?;
    let fake = FakeClerk::new(config);
    let listener = TcpListener::bind(args.addr).await?;
    eprintln!(
        "fake Clerk with {} users at http://{}/v1 (secret key {})",
        args.users,
        listener.local_addr()?,
        args.secret_key
    );
    fake.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// A member promoted or demoted, or an organization's plan changed (every other time each);
/// `None` when the population has no organizations.
fn organization_activity(
    fake: &FakeClerk,
    fake_url: &str,
    http: &reqwest::Client,
    step: u64,
) -> Option<reqwest::RequestBuilder> {
    use rand::seq::IndexedRandom;
    let memberships = fake.memberships();
    let (org_id, user_id, admin) = memberships.choose(&mut rand::rng())?.clone();
    if step.is_multiple_of(2) {
        let role = if admin { "org:member" } else { "org:admin" };
        tracing::info!(%org_id, %user_id, role, "demo activity: a member's role changes");
        let url = format!("{fake_url}/v1/organizations/{org_id}/memberships/{user_id}");
        return Some(http.patch(url).json(&serde_json::json!({ "role": role })));
    }
    let plan = ["free", "starter", "business", "enterprise"].choose(&mut rand::rng())?;
    tracing::info!(%org_id, plan, "demo activity: an organization's plan changes");
    let url = format!("{fake_url}/v1/organizations/{org_id}/metadata");
    Some(
        http.patch(url)
            .json(&serde_json::json!({"public_metadata": { "plan": plan }})),
    )
}

/// Live updates for the demo: every `every_ms`, a sign-in or a change through the fake Clerk's
/// HTTP API (a tier upgrade, new points, now and then a new or deleted user). The fake announces each one
/// with a signed webhook, so counts in the running service move as they would with real Clerk.
async fn simulate_activity(fake: FakeClerk, fake_url: String, every_ms: u64) {
    use rand::Rng;
    use rand::seq::IndexedRandom;
    if every_ms == 0 {
        return;
    }
    let http = reqwest::Client::new();
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(every_ms));
    ticks.tick().await;
    for step in 1u64.. {
        ticks.tick().await;
        let ids = fake.user_ids();
        let Some(id) = ids.choose(&mut rand::rng()).cloned() else {
            continue;
        };
        if step.is_multiple_of(7)
            && let Some(request) = organization_activity(&fake, &fake_url, &http, step)
        {
            if let Err(error) = request.bearer_auth("sk_test_fake_clerk").send().await {
                tracing::warn!(%error, "demo activity request failed");
            }
            continue;
        }
        if step % 3 == 0 {
            // Sign-ins change no `updated_at`: Clerk announces them with session.created only.
            tracing::info!(user_id = %id, "demo activity: a user signs in");
            fake.sign_in(&id, crate::clock::now_ms());
            continue;
        }
        let request = if step % 10 == 0 {
            let body = serde_json::json!({
                "email_address": [format!("demo.signup{step}@example.com")], "first_name": "Demo", "last_name": format!("Signup{step}"),
                "public_metadata": {"membership_tier": "bronze", "plan_type": "free", "signup_source": "demo"},
            });
            tracing::info!(step, "demo activity: a new user signs up");
            http.post(format!("{fake_url}/v1/users")).json(&body)
        } else if step % 15 == 0 {
            tracing::info!(user_id = %id, "demo activity: a user deletes their account");
            http.delete(format!("{fake_url}/v1/users/{id}"))
        } else {
            let tier = ["silver", "gold", "platinum"]
                .choose(&mut rand::rng())
                .copied()
                .unwrap_or("gold");
            let points = rand::rng().random_range(0..10_000);
            tracing::info!(user_id = %id, tier, points, "demo activity: membership_tier and points change");
            let body =
                serde_json::json!({"public_metadata": {"membership_tier": tier, "points": points}});
            http.patch(format!("{fake_url}/v1/users/{id}/metadata"))
                .json(&body)
        };
        if let Err(error) = request.bearer_auth("sk_test_fake_clerk").send().await {
            tracing::warn!(%error, "demo activity request failed");
        }
    }
}
