use rotator_test_support::redis_server::{ADMIN_USER, RedisServer};

#[tokio::test]
async fn users_authenticate_with_exactly_their_passwords() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    redis
        .create_user("app", &["first-pass", "second-pass"])
        .await?;
    assert!(redis.auth("app", "first-pass").await?);
    assert!(redis.auth("app", "second-pass").await?);
    assert!(!redis.auth("app", "other-pass").await?);
    assert!(!redis.auth("nobody", "first-pass").await?);

    redis.acl(&["SETUSER", "app", "<first-pass"]).await?;
    assert!(!redis.auth("app", "first-pass").await?);
    assert!(redis.auth("app", "second-pass").await?);
    Ok(())
}

#[tokio::test]
async fn a_password_on_default_leaves_the_admin_connection_working() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    redis
        .acl(&["SETUSER", "default", "resetpass", ">db-pass", "on"])
        .await?;
    assert!(redis.auth_default("db-pass").await?);
    assert!(!redis.auth_default("wrong").await?);
    let whoami = redis.acl(&["WHOAMI"]).await?;
    assert_eq!(whoami, redis::Value::BulkString(ADMIN_USER.into()));
    Ok(())
}

#[tokio::test]
async fn servers_are_independent_and_stop_on_drop() -> anyhow::Result<()> {
    let (a, b) = (RedisServer::start().await?, RedisServer::start().await?);
    assert_ne!(a.port(), b.port());
    a.create_user("app", &["pass-a"]).await?;
    assert!(!b.auth("app", "pass-a").await?);
    let addr = a.addr();
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    Ok(())
}
