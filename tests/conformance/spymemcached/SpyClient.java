// SpyClient speaks to a snowflaked memcached listener with spymemcached
// (Debian's libspymemcached-java), the classic Java memcached client, and
// prints what it saw as one JSON object for
// tests/integration/test_memcache_clients.py to check: the IDs of single
// gets, gets and a getBulk, version and stats, and what each refused or
// malformed call gave (none may hang: every operation times out after 5 s,
// so a hang shows as a timeout). Compiled at test time, never committed:
//
//   javac -cp /usr/share/java/spymemcached.jar -d DIR SpyClient.java
//   java -cp DIR:/usr/share/java/spymemcached.jar SpyClient 127.0.0.1 11212
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import net.spy.memcached.CASValue;
import net.spy.memcached.ConnectionFactoryBuilder;
import net.spy.memcached.MemcachedClient;

public final class SpyClient {
  private static final StringBuilder out = new StringBuilder("{");

  private static String quote(Object o) {
    if (o == null)
      return "null";
    StringBuilder b = new StringBuilder("\"");
    for (char ch : o.toString().toCharArray()) {
      if (ch == '"' || ch == '\\')
        b.append('\\').append(ch);
      else if (ch < 0x20)
        b.append(String.format("\\u%04x", (int) ch));
      else
        b.append(ch);
    }
    return b.append('"').toString();
  }

  private static void field(String name, String json) {
    if (out.length() > 1)
      out.append(", ");
    out.append(quote(name)).append(": ").append(json);
  }

  private static String object(Map<String, ?> m) {
    StringBuilder b = new StringBuilder("{");
    for (Map.Entry<String, ?> e : m.entrySet()) {
      if (b.length() > 1)
        b.append(", ");
      b.append(quote(e.getKey())).append(": ").append(quote(e.getValue()));
    }
    return b.append('}').toString();
  }

  /* attempt runs a call that should fail and records how: the value it
   * returned ("returned: ..."), or the exception and its cause. */
  private static String attempt(Callable<?> call) {
    try {
      return "returned: " + call.call();
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      return "ExecutionException: " + (c == null ? e.getMessage()
                                                 : c.getClass().getSimpleName() + ": " + c.getMessage());
    } catch (Exception e) {
      return e.getClass().getSimpleName() + ": " + e.getMessage();
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: SpyClient host port");
      System.exit(2);
    }
    MemcachedClient c = new MemcachedClient(
        new ConnectionFactoryBuilder().setOpTimeout(5000).build(),
        Collections.singletonList(new InetSocketAddress(args[0], Integer.parseInt(args[1]))));
    try {
      List<String> gets = new ArrayList<>();
      for (String k : Arrays.asList("id", "id", "order:42"))
        gets.add(String.valueOf(c.get(k)));
      field("get", "[" + String.join(", ", gets.stream().map(SpyClient::quote).toList()) + "]");
      CASValue<Object> cv = c.gets("id");
      field("gets_value", quote(cv.getValue()));
      field("gets_cas", quote(cv.getCas()));
      Map<String, Object> bulk = new LinkedHashMap<>(c.getBulk("a", "b", "c", "user:7"));
      field("bulk", object(bulk));
      for (Map.Entry<SocketAddress, String> e : c.getVersions().entrySet())
        field("version", quote(e.getValue()));
      for (Map<String, String> s : c.getStats().values())
        field("stats", object(s));
      for (Map<String, String> s : c.getStats("settings").values())
        field("stats_settings", object(s));
      Map<String, String> errors = new LinkedHashMap<>();
      errors.put("bad_key", attempt(() -> c.get("bad key")));
      errors.put("long_key", attempt(() -> c.get("k".repeat(251))));
      errors.put("set", attempt(() -> c.set("id", 0, "1").get(10, TimeUnit.SECONDS)));
      errors.put("add", attempt(() -> c.add("id", 0, "1").get(10, TimeUnit.SECONDS)));
      errors.put("incr", attempt(() -> c.incr("id", 1)));
      errors.put("delete", attempt(() -> c.delete("id").get(10, TimeUnit.SECONDS)));
      errors.put("touch", attempt(() -> c.touch("id", 10).get(10, TimeUnit.SECONDS)));
      errors.put("flush", attempt(() -> c.flush().get(10, TimeUnit.SECONDS)));
      errors.put("too_many", attempt(() -> c.getBulk("k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8")));
      field("errors", object(errors));
      // The client still works after all of that.
      field("after", quote(c.get("id")));
    } finally {
      c.shutdown(5, TimeUnit.SECONDS);
    }
    System.out.println(out.append('}'));
  }
}
