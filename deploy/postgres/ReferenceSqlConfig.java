// Rewrites a Handle.Net reference server's config.dct (and, with new ports, its siteinfo.json)
// so that it keeps its records in an SQL database through JDBC. Run by reference-on-sql.sh with
// the Handle.Net jars on the class path (java's single-file source launcher), so the file is read
// and written by the server's own StreamTable code and keeps its format.
//
// usage: java -cp HANDLE_JARS ReferenceSqlConfig.java SERVER_DIR JDBC_URL LOGIN PASSWORD
//            [HANDLE_PORT HTTP_PORT]
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Vector;
import net.cnri.util.StreamTable;

public class ReferenceSqlConfig {
    public static void main(String[] args) throws Exception {
        if (args.length != 4 && args.length != 6) {
            System.err.println("usage: ReferenceSqlConfig SERVER_DIR JDBC_URL LOGIN PASSWORD [HANDLE_PORT HTTP_PORT]");
            System.exit(2);
        }
        File dir = new File(args[0]);
        File cfgFile = new File(dir, "config.dct");
        StreamTable cfg = new StreamTable();
        cfg.readFromFile(cfgFile);
        StreamTable server = (StreamTable) cfg.get("server_config");
        if (server == null) throw new IllegalStateException(cfgFile + " has no server_config section");

        // The storage is chosen inside server_config; the JDBC settings are a table of their own.
        StreamTable sql = new StreamTable();
        sql.put("sql_url", args[1]);
        sql.put("sql_driver", "org.postgresql.Driver");
        sql.put("sql_login", args[2]);
        sql.put("sql_passwd", args[3]);
        sql.put("sql_read_only", "no");
        server.put("storage_type", "sql");
        server.put("sql_settings", sql);

        if (args.length == 6) {
            int hdl = Integer.parseInt(args[4]);
            int http = Integer.parseInt(args[5]);
            setPort(cfg, "hdl_tcp_config", hdl);
            setPort(cfg, "hdl_udp_config", hdl);
            setPort(cfg, "hdl_http_config", http);
            // A copy of a server must not take its original's DNS port too.
            Object ifaces = cfg.get("interfaces");
            if (ifaces instanceof Vector) {
                ((Vector<?>) ifaces).removeIf(i -> String.valueOf(i).startsWith("dns_"));
            }
            File site = new File(dir, "siteinfo.json");
            if (site.exists()) {
                JsonObject s = JsonParser.parseString(Files.readString(site.toPath(), StandardCharsets.UTF_8)).getAsJsonObject();
                for (JsonElement srv : s.getAsJsonArray("servers")) {
                    for (JsonElement i : srv.getAsJsonObject().getAsJsonArray("interfaces")) {
                        JsonObject o = i.getAsJsonObject();
                        String proto = o.get("protocol").getAsString();
                        o.addProperty("port", proto.equalsIgnoreCase("HTTP") ? http : hdl);
                    }
                }
                Gson gson = new GsonBuilder().setPrettyPrinting().create();
                Files.writeString(site.toPath(), gson.toJson(s), StandardCharsets.UTF_8);
            }
        }
        cfg.writeToFile(cfgFile);
    }

    private static void setPort(StreamTable cfg, String section, int port) {
        Object o = cfg.get(section);
        if (o instanceof StreamTable) ((StreamTable) o).put("bind_port", String.valueOf(port));
    }
}
