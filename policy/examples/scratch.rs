fn main() {
    let mut text = String::from("rules:\n");
    for i in 0..10_000 { text.push_str(&format!("  - name: r{i}\n    allow: [spiffe://td/ns/n{i}/sa/*, spiffe://td/ns/m{i}/**]\n    deny: [spiffe://td/ns/n{i}/sa/bad]\n")); }
    let t = std::time::Instant::now();
    let p = policy::Policy::from_yaml(&text, None).unwrap();
    println!("compile {:?} ({} bytes)", t.elapsed(), text.len());
    let peer = policy::SpiffeId::parse("spiffe://td/ns/n5001/sa/app").unwrap();
    let t = std::time::Instant::now();
    let n = 5_000_000;
    let mut allow = 0;
    for _ in 0..n { if p.decide("web", std::hint::black_box(&peer)).verdict == policy::Verdict::Allow { allow += 1; } }
    println!("decide {:?}/op ({allow})", t.elapsed() / n);
}
